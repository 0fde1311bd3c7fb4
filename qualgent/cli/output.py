"""Printing: rich tables for people, JSON (and nothing else on stdout) for machines."""

from __future__ import annotations

import json
import os
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _console(stderr: bool = False) -> Console:
    made = Console(stderr=stderr)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 200  # a pipe or a CI log: keep ids whole rather than folded into 80 columns
    return made


console = _console()
errors = _console(stderr=True)

_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def status_text(status: str) -> str:
    style = _STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


_FINAL = ("completed", "failed", "cancelled")


def attempts_text(job: dict[str, Any]) -> str:
    """`2/3`; a finished job's count says `final` when attempts were left (a test failure is not retried)."""
    text = f"{job['attempts']}/{job['max_attempts']}"
    if job["status"] in ("failed", "cancelled") and job["attempts"] < job["max_attempts"]:
        text += " (final)"
    return text


def exit_code_text(job: dict[str, Any]) -> str:
    """The run's exit code; `-` when there is none (not run yet, or killed, timed out or never started)."""
    code = (job.get("result") or {}).get("exit_code")
    return "-" if code is None else str(code)


def jobs_table(jobs: list[dict[str, Any]], title: str | None = None) -> Table:
    """One row per job. `group` is the first 8 characters of the group id: the jobs of one app build and target
    that one agent runs after one install share it."""
    table = Table(title=title, header_style="bold")
    table.add_column("job id", no_wrap=True)
    for column in ("org", "app version", "group", "test", "priority", "target", "status", "exit", "attempts"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(
            job["id"],
            escape(job["org_id"]),
            escape(job["app_version_id"]),
            str(job.get("group_id") or "-")[:8],
            escape(job["test_path"]),
            job["priority"],
            job["target"],
            status_text(job["status"]),
            exit_code_text(job),
            attempts_text(job),
        )
    return table


def job_detail(job: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in ("id", "org_id", "app_version_id", "test_path", "priority", "target"):
        table.add_row(key, str(job[key]))
    table.add_row("status", status_text(job["status"]))
    table.add_row("attempts", attempts_text(job))
    for key in ("group_id", "agent_id", "created_at", "started_at", "finished_at"):
        table.add_row(key, str(job.get(key) or "-"))
    result = job.get("result")
    if result:
        table.add_row("exit code", exit_code_text(job))
        if result.get("duration_ms") is not None:
            table.add_row("duration", f"{result['duration_ms'] / 1000:.1f}s")
        if result.get("error"):
            table.add_row("error", result["error"])
        if result.get("error_location"):
            table.add_row("error at", result["error_location"])
        if result.get("output_tail"):
            table.add_row("output (tail)", result["output_tail"][-2000:])
    return table
