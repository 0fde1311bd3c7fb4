"""ruff and mypy (strict on qualgent/) are part of the test suite, so CI runs them on every change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean() -> None:
    done = _run(str(BIN / "ruff"), "check", "qualgent", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean() -> None:
    done = _run(str(BIN / "ruff"), "format", "--check", "qualgent", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    done = _run(str(BIN / "mypy"), "qualgent")
    assert done.returncode == 0, done.stdout + done.stderr
