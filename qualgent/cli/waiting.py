"""Waiting for jobs from the CLI: one long-poll in flight at a time (POST /jobs/wait), a live progress
view for people on stderr, and retries with backoff when the server or its database is away, so a
restart of either does not change the exit code CI gets."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from qualgent.cli.client import ApiClient, CliError
from qualgent.cli.exit_codes import INFRA_ERROR
from qualgent.cli.outcomes import Job, Summary, kind

POLL_SECONDS = 25.0
_ICONS = {
    "passed": "[green]✓ passed[/green]",
    "failed": "[red]✗ failed[/red]",
    "infra_error": "[yellow]! infrastructure error[/yellow]",
    "cancelled": "[magenta]- cancelled[/magenta]",
}


class Progress:
    """What a person watching sees: each job as it finishes, and a status line kept up to date."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.live: Live | None = None
        self._last_line = 0.0
        self._unserved: list[str] = []

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(Text("waiting…"), console=self.console, transient=True, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def finished(self, job: Job) -> None:
        duration = ((job.get("result") or {}).get("duration_ms") or 0) / 1000
        self.console.print(f"{_ICONS[kind(job)]} {job['test_path']} ({job['app_version_id']}, {duration:.1f} s) "
                           f"[dim]{job['id']}[/dim]")  # fmt: skip

    def status(self, jobs: list[Job], groups_ahead: dict[str, int], reconnecting: str | None = None) -> None:
        summary = Summary.of(jobs)
        running = sum(1 for job in jobs if job["status"] == "running")
        pending = sum(1 for job in jobs if job["status"] == "pending")
        line = f"{summary.total - summary.unfinished}/{summary.total} finished · {summary.passed} passed · "
        line += f"{summary.failed + summary.infra_errors} failed · {running} running · {pending} pending"
        line += _queue_note(jobs, groups_ahead)
        unserved = _unserved_targets(jobs)
        if unserved:
            line += f" · no online agent serves {', '.join(unserved)}: its jobs wait until one does"
        if reconnecting:
            line += f" · server unreachable, retrying: {reconnecting}"
        if self.live is not None:
            self.live.update(Text(line))
        elif time.monotonic() - self._last_line > 30 or reconnecting or (unserved and unserved != self._unserved):
            self._last_line = time.monotonic()
            self.console.print(line)
        self._unserved = unserved


def _queue_note(jobs: list[Job], groups_ahead: dict[str, int]) -> str:
    """The place and ETA of the pending job that should start first (`queue` on pending jobs)."""
    queues = [job["queue"] for job in jobs if job["status"] == "pending" and job.get("queue")]
    if not queues:
        return f" (next group: {min(groups_ahead.values())} group(s) ahead in the queue)" if groups_ahead else ""
    first = min(queues, key=lambda q: (q["eta_seconds"] is None, q["eta_seconds"] or 0, q["groups_ahead"]))
    note = f" (next group: {first['groups_ahead']} group(s) ahead in the queue"
    if first["eta_seconds"] is not None:
        note += f", starts in ~{_duration(first['eta_seconds'])}"
    return note + ")"


def _unserved_targets(jobs: list[Job]) -> list[str]:
    """Targets of pending jobs that no online agent serves."""
    return sorted(
        {
            job["target"]
            for job in jobs
            if job["status"] == "pending" and (job.get("queue") or {}).get("agents_online") == 0
        }
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def wait_for_jobs(api: ApiClient, job_ids: Sequence[str], timeout: float | None, progress: Progress) -> list[Job]:
    """Wait until every job is final or `timeout` seconds pass; return the jobs as they are then."""
    deadline = None if timeout is None else time.monotonic() + timeout
    known: dict[str, Job | None] = dict.fromkeys(job_ids)
    backoff = 0.5
    while True:
        unfinished = {i: (j["status"] if j else None) for i, j in known.items() if j is None or kind(j) == "unfinished"}
        remaining = None if deadline is None else deadline - time.monotonic()
        if not unfinished or (remaining is not None and remaining <= 0 and all(known.values())):
            return [job for job in known.values() if job is not None]
        poll = POLL_SECONDS if remaining is None else max(0.0, min(POLL_SECONDS, remaining))
        try:
            answer = api.post("/jobs/wait", {"jobs": unfinished, "timeout": poll})
        except CliError as err:
            if err.exit_code != INFRA_ERROR or (remaining is not None and remaining <= 0):
                raise
            progress.status([j for j in known.values() if j], {}, reconnecting=str(err).splitlines()[0][:120])
            time.sleep(min(backoff * random.uniform(0.5, 1.0), max(0.1, remaining or backoff)))
            backoff = min(10.0, backoff * 2)
            continue
        backoff = 0.5
        _absorb(known, answer["jobs"], progress)
        progress.status([j for j in known.values() if j], answer.get("groups_ahead") or {})


def _absorb(known: dict[str, Job | None], jobs: list[Any], progress: Progress) -> None:
    for job in jobs:
        before = known.get(job["id"])
        known[job["id"]] = job
        if kind(job) != "unfinished" and (before is None or kind(before) == "unfinished"):
            progress.finished(job)
