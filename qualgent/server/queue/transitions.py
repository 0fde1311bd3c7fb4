"""Every change of a job's or a group's status, and the one function or statement that decides it.

docs/design.md ("1. State machines") draws these as its mermaid diagrams, each arrow labelled `trigger (owner)`;
tests/integration/test_transitions.py checks that the diagrams show exactly these transitions and that every
statement or function in the repository that writes `jobs.status` or `job_groups.status` is a writer named here. A
new way to change a status therefore changes this table and the diagram with it.

`owner` decides the transition (for a run's end: qualgent_settle, whatever path the result took); `writers` are the
statements that carry it out, each checking, in its WHERE, the status it moves the row from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NEW = "[*]"  # a row that did not exist


@dataclass(frozen=True, slots=True)
class Transition:
    machine: Literal["job", "group"]
    source: str  # a status, or NEW
    target: str
    trigger: str
    owner: str  # a function or named statement (qualgent/server/db/queries.sql)
    writers: tuple[str, ...]

    @property
    def label(self) -> str:
        """The arrow's label in docs/design.md."""
        return f"{self.trigger} ({self.owner})"


def _job(source: str, target: str, trigger: str, owner: str, *writers: str) -> Transition:
    return Transition("job", source, target, trigger, owner, writers or (owner,))


def _group(source: str, target: str, trigger: str, owner: str, *writers: str) -> Transition:
    return Transition("group", source, target, trigger, owner, writers or (owner,))


SETTLE = "qualgent_settle"  # what a run's end does to its job, on every path (qualgent/server/db/schema.sql)

TRANSITIONS: tuple[Transition, ...] = (
    _job(NEW, "pending", "submit", "copy_jobs"),
    _job("pending", "running", "start", "start_jobs"),
    _job("running", "completed", "pass", SETTLE, "finish_runs"),
    _job("running", "completed", "flaky pass after a test failure", "qualgent_flaky", "finish_runs"),
    _job("running", "failed", "test failure with no test retry left", SETTLE, "finish_runs"),
    _job("running", "failed", "infra error with no attempt left", SETTLE, "finish_runs"),
    _job("running", "pending", "retry after infra error or test failure, tries left", SETTLE, "finish_runs"),
    _job("running", "pending", "lapse, handed back with attempts left", SETTLE, "finish_runs"),
    _job("running", "failed", "lapse, handed back on its last attempt", SETTLE, "finish_runs"),
    _job("running", "running", "retry in place by the agent's runner", "retry_in_place"),
    _job("pending", "completed", "pass, started and ended in one report", SETTLE, "qualgent_run_jobs"),
    _job("pending", "failed", "fail, started and ended in one report", SETTLE, "qualgent_run_jobs"),
    _job("pending", "pending", "moved to its key's pending group", "move_jobs_to_groups"),
    _job("pending", "cancelled", "cancel", "cancel_jobs"),
    _job("running", "cancelled", "cancel, its agent told by heartbeat", "cancel_jobs"),
    _job("completed", "pending", "re-run", "rerun_jobs"),
    _job("failed", "pending", "re-run", "rerun_jobs"),
    _job("cancelled", "pending", "re-run", "rerun_jobs"),
    _group(NEW, "pending", "submit or requeue", "upsert_pending_groups"),
    _group("pending", "pending", "more jobs of the key join", "upsert_pending_groups"),
    _group("pending", "running", "claim", "qualgent_claim"),
    _group("running", "done", "close, no job left pending or running", "qualgent_close_group"),
    _group("running", "done", "hand back, release or lapsed lease", "mark_group_done"),
    _group("running", "done", "retire, nothing runnable at its claim", "mark_group_done"),
    _group("pending", "done", "retire, its last pending job cancelled", "refresh_pending_group"),
)


def writers() -> set[str]:
    """Every statement or function allowed to write a job's or a group's status."""
    return {writer for t in TRANSITIONS for writer in t.writers}
