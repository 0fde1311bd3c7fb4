"""A real Playwright test runner for the `--appwright` tests: tests/e2e/playwright_project (package.json and its
package-lock.json pinning @playwright/test) installed with `npm ci` once into a cache folder kept between test
sessions (keyed by the lock file's hash), and copied per test with node_modules linked to that install."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).with_name("playwright_project")
CACHE = Path(os.environ.get("QUALGENT_TEST_CACHE", Path.home() / ".cache" / "qualgent-tests"))


def node_missing() -> str | None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed: the --appwright tests need a real Playwright runner"


def installed_node_modules() -> Path:
    """node_modules of the fixture project, installed with `npm ci` on first use (a lock keeps parallel sessions from
    installing twice)."""
    lock = (PROJECT / "package-lock.json").read_bytes()
    key = hashlib.sha256(lock + (PROJECT / "package.json").read_bytes()).hexdigest()[:16]
    home = CACHE / f"playwright-{key}"
    done = home / "node_modules" / ".bin" / "playwright"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"playwright-{key}.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not done.exists():
            work = Path(tempfile.mkdtemp(prefix="npm-ci-", dir=CACHE))
            for name in ("package.json", "package-lock.json"):
                shutil.copy(PROJECT / name, work / name)
            ran = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if ran.returncode != 0:
                shutil.rmtree(work, ignore_errors=True)
                raise AssertionError(f"npm ci failed:\n{ran.stdout}\n{ran.stderr}")
            shutil.rmtree(home, ignore_errors=True)
            work.rename(home)
    return home / "node_modules"


def project_copy(where: Path) -> Path:
    """The fixture project in `where` (specs, config, global setup), its node_modules linked to the install."""
    if reason := node_missing():
        pytest.skip(reason)
    modules = installed_node_modules()
    shutil.copytree(PROJECT, where, ignore=shutil.ignore_patterns("node_modules", "test-results"))
    (where / "node_modules").symlink_to(modules, target_is_directory=True)
    return where
