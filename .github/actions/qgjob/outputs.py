"""The qgjob action's outputs, from what `qgjob submit --wait --json` printed and how it exited.

Usage: outputs.py RESULT_JSON EXIT_CODE JUNIT_FILE  >> "$GITHUB_OUTPUT"

qgjob's --json document is {"jobs": [...], "summary": {"total", "passed", "failed", "infra_errors",
"cancelled", "unfinished"}, "exit_code": n}. When qgjob stopped before waiting (bad input: 2, server
unreachable: 3) there is no document: the counts are then 0, the exit code is qgjob's, and a line in the
step summary says so (qgjob wrote its reason to the log).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COUNTS = {
    "total": "total",
    "passed": "passed",
    "failed": "failed",
    "infra-errors": "infra_errors",
    "cancelled": "cancelled",
    "unfinished": "unfinished",
}
_MEANING = {2: "bad input", 3: "an infrastructure error (is the server reachable?)"}


def read_report(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(document, dict) and isinstance(document.get("summary"), dict):
        return document
    return None


def outputs(report: dict[str, Any] | None, exit_code: int, junit_file: str, result_file: str) -> dict[str, str]:
    summary = (report or {}).get("summary") or {}
    jobs = (report or {}).get("jobs") or []
    values = {name: str(int(summary.get(key) or 0)) for name, key in COUNTS.items()}
    values["exit-code"] = str(exit_code)
    values["job-ids"] = json.dumps([job["id"] for job in jobs if isinstance(job, dict) and "id" in job])
    values["junit-file"] = junit_file if report is not None and Path(junit_file).is_file() else ""
    values["result-file"] = result_file if report is not None else ""
    return values


def main(argv: list[str]) -> int:
    result_file, exit_text, junit_file = argv
    exit_code = int(exit_text)
    report = read_report(Path(result_file))
    for name, value in outputs(report, exit_code, junit_file, result_file).items():
        print(f"{name}={value}")
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if report is None and summary_path:
        meaning = _MEANING.get(exit_code, "an error")
        with open(summary_path, "a", encoding="utf-8") as summary:
            summary.write(f"### qualgent: no results\n\nqgjob exited {exit_code} ({meaning}) before the tests ran; ")
            summary.write("its message is in the step's log.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
