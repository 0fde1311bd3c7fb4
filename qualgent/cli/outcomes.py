"""From jobs to what CI needs: an exit code, a summary, a JUnit file, GitHub annotations and step summary.
Pure functions of the jobs' JSON, so they are the same for `qgjob wait` and `qgjob submit --wait`."""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qualgent.cli.exit_codes import CANCELLED, INFRA_ERROR, PASSED, TEST_FAILED, TIMED_OUT

Job = dict[str, Any]

# What each job contributes to the exit code; the most severe (the highest) wins.
_KIND_EXIT = {"passed": PASSED, "failed": TEST_FAILED, "infra_error": INFRA_ERROR, "unfinished": TIMED_OUT,
              "cancelled": CANCELLED}  # fmt: skip
MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
_SUMMARY_ROWS = 500  # keeps the step summary far below GitHub's 1 MiB cut


def kind(job: Job) -> str:
    """passed | failed (the test failed) | infra_error (retries exhausted on infrastructure) |
    cancelled | unfinished (not final when the wait ended)."""
    status = job["status"]
    if status == "completed":
        return "passed"
    if status == "cancelled":
        return "cancelled"
    if status == "failed":
        result = job.get("result") or {}
        return "failed" if result.get("exit_code") == 1 else "infra_error"
    return "unfinished"


def exit_code(jobs: list[Job]) -> int:
    return max((_KIND_EXIT[kind(job)] for job in jobs), default=PASSED)


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    passed: int
    failed: int
    infra_errors: int
    cancelled: int
    unfinished: int

    @classmethod
    def of(cls, jobs: list[Job]) -> Summary:
        counts = Counter(kind(job) for job in jobs)
        return cls(len(jobs), counts["passed"], counts["failed"], counts["infra_error"], counts["cancelled"],
                   counts["unfinished"])  # fmt: skip

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def line(self) -> str:
        parts = [f"{self.passed} passed", f"{self.failed} failed"]
        parts += [f"{n} {label}" for n, label in ((self.infra_errors, "infrastructure errors"),
                  (self.cancelled, "cancelled"), (self.unfinished, "unfinished")) if n]  # fmt: skip
        return f"{self.total} test(s): " + ", ".join(parts)


def report(jobs: list[Job]) -> dict[str, Any]:
    """The --json document of a wait."""
    return {"jobs": jobs, "summary": Summary.of(jobs).as_dict(), "exit_code": exit_code(jobs)}


def _seconds(job: Job) -> str:
    duration = (job.get("result") or {}).get("duration_ms")
    return f"{(duration or 0) / 1000:.3f}"


def error_location(job: Job) -> str | None:
    """Where the run's first error was raised ("path:line"), when the runner said (AppWright runs)."""
    location = (job.get("result") or {}).get("error_location")
    return str(location) if location else None


def _file_and_line(location: str) -> tuple[str, str | None]:
    path, _, line = location.rpartition(":")
    return (path, line) if path and line.isdigit() else (location, None)


def _detail(job: Job) -> str:
    result = job.get("result") or {}
    lines = [f"job {job['id']} · attempts {job['attempts']}/{job['max_attempts']} · agent {job.get('agent_id') or '-'}"]
    if result.get("error"):
        lines.append(f"error: {result['error']}")
    if location := error_location(job):
        lines.append(f"at: {location}")
    if result.get("output_tail"):
        lines += ["", "output (tail):", result["output_tail"]]
    return "\n".join(lines)


# How a wait that left jobs unfinished ended, as the JUnit report says it.
_ENDED = {
    "timed_out": ("TimedOut", "when the wait timed out"),
    "interrupted": ("Interrupted", "when the wait was interrupted (Ctrl-C); the job keeps running"),
    "gave_up": ("NoAgent", "when the wait gave up: no online agent serves its target"),
}


def write_junit(jobs: list[Job], path: Path, ended: str = "timed_out") -> None:
    """One testsuite per app version and target, one testcase per job. `ended` says why unfinished jobs are:
    timed_out, interrupted or gave_up."""
    suites: dict[tuple[str, str, str], list[Job]] = defaultdict(list)
    for job in jobs:
        suites[(job["org_id"], job["app_version_id"], job["target"])].append(job)
    root = ET.Element("testsuites", name="qualgent")
    totals: Counter[str] = Counter()
    for (org, version, target), members in suites.items():
        suite = ET.SubElement(root, "testsuite", name=f"{org} {version} {target}")
        counts: Counter[str] = Counter()
        for job in members:
            case = ET.SubElement(suite, "testcase", classname=f"{org}.{version}.{target}", name=job["test_path"],
                                 file=job["test_path"], time=_seconds(job))  # fmt: skip
            _outcome_element(case, job, counts, ended)
            ET.SubElement(case, "system-out").text = _detail(job)
        suite.set("tests", str(len(members)))
        for name in ("failures", "errors", "skipped"):
            suite.set(name, str(counts[name]))
        totals.update(counts)
        totals["tests"] += len(members)
    for name in ("tests", "failures", "errors", "skipped"):
        root.set(name, str(totals[name]))
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _outcome_element(case: ET.Element, job: Job, counts: Counter[str], ended: str = "timed_out") -> None:
    what = kind(job)
    result = job.get("result") or {}
    if what == "failed":
        counts["failures"] += 1
        message = f"test failed (exit 1), job {job['id']}"
        if location := error_location(job):
            first = (result.get("error") or "").strip().splitlines()[:1]
            message = f"test failed at {location}: {first[0] if first else 'see output'}, job {job['id']}"
        element = ET.SubElement(case, "failure", message=message, type="TestFailed")
        element.text = result.get("output_tail") or ""
    elif what == "infra_error":
        counts["errors"] += 1
        message = f"infrastructure error after {job['attempts']} attempt(s): {result.get('error') or 'unknown'}"
        element = ET.SubElement(case, "error", message=message, type="InfrastructureError")
        element.text = result.get("output_tail") or ""
    elif what == "unfinished":
        counts["errors"] += 1
        error_type, when = _ENDED[ended]
        ET.SubElement(case, "error", message=f"still {job['status']} {when}", type=error_type)
    elif what == "cancelled":
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message="cancelled")


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(jobs: list[Job]) -> list[str]:
    """`::error` workflow commands for the tests that did not pass (at most 10, as GitHub shows)."""
    bad = [job for job in jobs if kind(job) != "passed"]
    lines = []
    for job in bad[:MAX_ANNOTATIONS]:
        what = {"failed": "failed", "infra_error": "infrastructure error", "cancelled": "cancelled",
                "unfinished": "did not finish in time"}[kind(job)]  # fmt: skip
        result = job.get("result") or {}
        tail = (result.get("output_tail") or "").strip().splitlines()[-5:]
        message = f"{job['test_path']} {what} on {job['app_version_id']} ({job['target']}), job {job['id']}"
        error = (result.get("error") or "").strip()
        if kind(job) == "infra_error" and error:
            message += f": {error}"
        if (location := error_location(job)) and error:
            message += f"\nat {location}: {error}"
        elif tail:
            message += "\n" + "\n".join(tail)
        where = ""
        if location:  # GitHub shows the annotation on that line of the file
            path, line = _file_and_line(location)
            where = f"file={_escape_property(path)}," + (f"line={line}," if line else "")
        lines.append(f"::error {where}title={_escape('qualgent: ' + job['test_path'])}::{_escape(message)}")
    if len(bad) > MAX_ANNOTATIONS:
        lines.append(f"::error::{len(bad) - MAX_ANNOTATIONS} more test(s) did not pass: see the job summary")
    return lines


def github_step_summary(jobs: list[Job], notes: Sequence[str] = ()) -> str:
    summary = Summary.of(jobs)
    icon = {"passed": "✅", "failed": "❌", "infra_error": "⚠️", "cancelled": "🚫", "unfinished": "⏳"}
    ordered = sorted(jobs, key=lambda job: (kind(job) == "passed", job["test_path"]))
    lines = [f"### qualgent: {summary.line()}", "", "| | test | app version | target | attempts | time | job |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    if notes:
        lines[2:2] = [*notes, ""]
    for job in ordered[:_SUMMARY_ROWS]:
        test_path = job["test_path"].replace("|", "\\|")
        lines.append(f"| {icon[kind(job)]} | `{test_path}` | {job['app_version_id']} | {job['target']} | "
                     f"{job['attempts']}/{job['max_attempts']} | {_seconds(job)} s | `{job['id']}` |")  # fmt: skip
    if len(ordered) > _SUMMARY_ROWS:
        lines.append(f"\n… and {len(ordered) - _SUMMARY_ROWS} more (all passed or listed by `qgjob list`).")
    return "\n".join(lines) + "\n"


def publish_to_github(jobs: list[Job], annotations_to_stdout: bool, notes: Sequence[str] = ()) -> None:
    """Inside GitHub Actions: append the step summary and print the annotations."""
    if not in_github_actions():
        return
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as out:
            out.write(github_step_summary(jobs, notes))
    stream = sys.stdout if annotations_to_stdout else sys.stderr
    for line in github_annotations(jobs):
        print(line, file=stream)
