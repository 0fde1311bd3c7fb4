"""Waiting for jobs from the CLI: one long-poll in flight at a time (POST /jobs/wait), a live progress
view for people on stderr, and retries with backoff when the server or its database is away, so a
restart of either does not change the exit code CI gets."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from qualgent.cli.client import ApiClient, CliError
from qualgent.cli.exit_codes import INFRA_ERROR
from qualgent.cli.outcomes import Job, Summary, error_location, kind

POLL_SECONDS = 25.0
CONNECT_TIMEOUT = 30.0  # a server never reached in this long is a wrong address, not a restart: exit 3


@dataclass
class WaitState:
    """What a wait knows, kept outside the loop so an interrupted wait can still report it."""

    known: dict[str, Job | None]
    reached: bool = False  # the server answered once: later failures are a restart, ridden out until --timeout
    no_agent_for: list[str] = field(default_factory=list)  # targets pending jobs need that no online agent serves
    gave_up: str | None = None  # why the wait stopped before the jobs were final (--fail-if-no-agent)

    @classmethod
    def of(cls, job_ids: Sequence[str], jobs: Sequence[Job] = ()) -> WaitState:
        known: dict[str, Job | None] = dict.fromkeys(job_ids)
        known.update({job["id"]: job for job in jobs if job["id"] in known})
        return cls(known, reached=bool(jobs))

    def jobs(self) -> list[Job]:
        return [job for job in self.known.values() if job is not None]


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
        self._no_agent_for: list[str] = []

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(Text("waiting…"), console=self.console, transient=True, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def finished(self, job: Job) -> None:
        result = job.get("result") or {}
        duration = (result.get("duration_ms") or 0) / 1000
        cause = f": {escape(result['error'])}" if kind(job) == "infra_error" and result.get("error") else ""
        self.console.print(f"{_ICONS[kind(job)]} {escape(job['test_path'])} ({escape(job['app_version_id'])}, "
                           f"{duration:.1f} s){cause} [dim]{job['id']}[/dim]", soft_wrap=True)  # fmt: skip
        if kind(job) == "failed" and (location := error_location(job)):
            first = (result.get("error") or "").strip().splitlines()[:1]
            self.console.print(f"    at {location}: {first[0] if first else ''}", markup=False, highlight=False)

    def status(
        self,
        jobs: list[Job],
        groups_ahead: dict[str, int],
        reconnecting: str | None = None,
        no_agent_for: Sequence[str] = (),
    ) -> None:
        summary = Summary.of(jobs)
        running = sum(1 for job in jobs if job["status"] == "running")
        pending = sum(1 for job in jobs if job["status"] == "pending")
        line = f"{summary.total - summary.unfinished}/{summary.total} finished · {summary.passed} passed · "
        line += f"{summary.failed + summary.infra_errors} failed · {running} running · {pending} pending"
        line += _queue_note(jobs, groups_ahead)
        if no_agent_for:
            line += f" · {no_agent_message(no_agent_for)}: waiting for one"
        if reconnecting:
            line += f" · server unreachable, retrying: {reconnecting}"
        news = list(no_agent_for) != self._no_agent_for
        self._no_agent_for = list(no_agent_for)
        if self.live is not None:
            self.live.update(Text(line))
        elif time.monotonic() - self._last_line > 30 or reconnecting or news:
            self._last_line = time.monotonic()
            self.console.print(line, soft_wrap=True)


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


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def no_agent_message(targets: Sequence[str]) -> str:
    return f"no online agent serves target {', '.join(targets)}"


def wait_for_jobs(
    api: ApiClient,
    state: WaitState,
    timeout: float | None,
    progress: Progress,
    connect_timeout: float = CONNECT_TIMEOUT,
    fail_if_no_agent: bool = False,
) -> WaitState:
    """Wait until every job is final or `timeout` seconds pass; `state` holds the jobs as they are then. A
    server never reached within `connect_timeout` is given up on (exit 3); one reached before is waited for.
    With `fail_if_no_agent`, the wait stops as soon as pending jobs need a target no online agent serves."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    known = state.known
    backoff = 0.5
    first = True  # the first poll asks for an answer at once (statuses unknown): the queue and agents, now
    while True:
        unfinished = {i: (j["status"] if j and not first else None) for i, j in known.items()
                      if j is None or kind(j) == "unfinished"}  # fmt: skip
        remaining = None if deadline is None else deadline - time.monotonic()
        if not unfinished or (remaining is not None and remaining <= 0 and all(known.values())):
            return state
        poll = POLL_SECONDS if remaining is None else max(0.0, min(POLL_SECONDS, remaining))
        try:
            answer = api.post("/jobs/wait", {"jobs": unfinished, "timeout": poll})
        except CliError as err:
            if err.exit_code != INFRA_ERROR or (remaining is not None and remaining <= 0):
                raise
            waited = time.monotonic() - started
            if err.unreachable and not state.reached and waited >= connect_timeout:
                raise CliError(
                    f"{err} (never reached in {waited:.0f} s, --connect-timeout {connect_timeout:g}: "
                    "is --api-url / QGJOB_API_URL right?)",
                    INFRA_ERROR,
                    unreachable=True,
                ) from err
            progress.status(state.jobs(), {}, reconnecting=str(err).splitlines()[0][:120])
            pause = min(backoff * random.uniform(0.5, 1.0), max(0.1, remaining or backoff))
            if not state.reached:
                pause = min(pause, max(0.1, connect_timeout - waited))
            time.sleep(pause)
            backoff = min(10.0, backoff * 2)
            continue
        state.reached, first = True, False
        backoff = 0.5
        _absorb(known, answer["jobs"], progress)
        state.no_agent_for = list(answer.get("no_agent_for") or [])
        progress.status(state.jobs(), answer.get("groups_ahead") or {}, no_agent_for=state.no_agent_for)
        if fail_if_no_agent and state.no_agent_for:
            state.gave_up = f"{no_agent_message(state.no_agent_for)} (--fail-if-no-agent)"
            return state


def _absorb(known: dict[str, Job | None], jobs: list[Any], progress: Progress) -> None:
    for job in jobs:
        before = known.get(job["id"])
        known[job["id"]] = job
        if kind(job) != "unfinished" and (before is None or kind(before) == "unfinished"):
            progress.finished(job)
