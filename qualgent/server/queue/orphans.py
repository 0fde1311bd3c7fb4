"""Runs an agent reports after its claim was lost: on record in the job's history, its state untouched.

An agent starts a test and reports the start a moment later (its reporter lingers up to LINGER_SECONDS to batch). Should
the server be down then (killed, restarting), the start reaches it only after the lease lapsed and the rescue
handed the group back: the report is refused (409, the claim is stale) and the job runs again elsewhere. Runs are
at least once, but every run that started must leave an attempt, or the history lies about what a device did (a
test with side effects ran twice, one run on record). So a refused report still records the runs it describes
that the server never saw: an attempt by that agent in that group, finished, with the run's outcome (a start
without a result: an infrastructure error, as its agent stops the test once it learns the claim is lost).

The job's status, result and group are left as they are; its attempt count grows by one, as the run spent one of
its attempts. Attempt numbers stay the order of the job's attempts with the open one (if another agent runs the job
now) the latest: the orphan takes its number and the open attempt the next.

Only the agent that held the claim, under its token, can record anything this way, and only for jobs of the
group's key (org, app version, target), once per (job, agent, group).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from qualgent.domain import Outcome, classify_exit_code
from qualgent.server.db.sql import P
from qualgent.server.queue.core import Queue

log = logging.getLogger("qualgent.server.queue")

UNKNOWN_RESULT = "started after its claim was lost; stopped by its agent, the result unknown"


@dataclass(frozen=True, slots=True)
class OrphanRun:
    job_id: uuid.UUID
    started_ms_ago: int
    outcome: Outcome
    exit_code: int | None = None
    duration_ms: int | None = None
    error: str | None = None


def runs_of(
    starts: Sequence[tuple[uuid.UUID, int]],
    results: Sequence[tuple[uuid.UUID, int | None, int | None, str | None, str | None]],
) -> list[OrphanRun]:
    """The runs a refused report describes: each job's start (how long ago) with its result when there is one (the
    last, when the runner retried tries within the run); `results` are (job id, exit code, duration ms, error, the
    agent's own outcome)."""
    started = dict(starts)
    runs: dict[uuid.UUID, OrphanRun] = {}
    for job_id, exit_code, duration_ms, error, outcome in results:  # a job's last result ended its run
        by_code = classify_exit_code(exit_code)
        said = Outcome(outcome) if outcome is not None and exit_code is None else by_code
        ago = started.get(job_id, duration_ms or 0)
        runs[job_id] = OrphanRun(job_id, ago, said, exit_code, duration_ms, error)
    for job_id, ago in starts:
        runs.setdefault(job_id, OrphanRun(job_id, ago, Outcome.INFRA_ERROR, error=UNKNOWN_RESULT))
    return list(runs.values())


class _Key(msgspec.Struct, frozen=True):
    """A claim_once_held row: the key of the group the claim was on."""

    org_id: str
    app_version_id: str
    target: str


class _Job(msgspec.Struct, frozen=True):
    """A lock_job_for_orphan row."""

    id: uuid.UUID
    org_id: str
    app_version_id: str
    target: str
    attempts: int
    on_record: bool
    open_attempt: bool


async def record(
    q: Queue, agent_id: uuid.UUID, group_id: uuid.UUID, token: uuid.UUID, runs: Sequence[OrphanRun]
) -> int:
    """Record the runs the server never saw; returns how many. One transaction, a few statements a run: this
    happens only when a claim was lost under a running test."""
    if not runs:
        return 0
    recorded = 0
    async with q.db.transaction() as tx:
        held_once = {"group_id": group_id, "agent_id": agent_id, "token": token}
        group = await tx.first(P.claim_once_held, held_once, _Key)
        if group is None:
            return 0
        for run in runs:
            job = await tx.first(P.lock_job_for_orphan, {"job_id": run.job_id, **held_once}, _Job)
            if job is None or job.on_record:
                continue
            if (job.org_id, job.app_version_id, job.target) != (group.org_id, group.app_version_id, group.target):
                continue
            number = job.attempts + 1
            if job.open_attempt:  # another agent runs it now: its attempt stays the latest
                await tx.execute(P.renumber_open_attempt, {"job_id": run.job_id, "number": job.attempts})
                number = job.attempts
            await tx.execute(
                P.record_orphan_run,
                {
                    "job_id": run.job_id,
                    "number": number,
                    "agent_id": agent_id,
                    "group_id": group_id,
                    "started_ms_ago": run.started_ms_ago,
                    "outcome": run.outcome.value,
                    "exit_code": run.exit_code,
                    "duration_ms": run.duration_ms,
                    "error": run.error,
                },
            )
            recorded += 1
            log.warning(
                "job %s: a run by agent %s, reported after its claim on group %s was lost, is recorded (attempt %d)",
                run.job_id,
                agent_id,
                group_id,
                number,
            )
    return recorded
