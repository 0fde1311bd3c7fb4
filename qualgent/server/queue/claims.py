"""What agents do to the queue: claim a whole group, start and report its jobs, heartbeat, release.
Every write checks the claim's token (fencing): a stale token changes nothing and raises StaleClaim."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

from qualgent.domain import Conflict, JobStatus, NotFound, Outcome, StaleClaim, classify_exit_code
from qualgent.domain.types import GroupStatus
from qualgent.server.db.database import Row, Tx
from qualgent.server.db.sql import P
from qualgent.server.observability import metrics
from qualgent.server.queue import history, orphans
from qualgent.server.queue._common import requeue
from qualgent.server.queue.core import Queue

OUTPUT_TAIL_LIMIT = 16_384
RUNS_DID_NOT_ALL_END = "QGRUN"  # qualgent_report_runs: take the general path


class ClaimedJob(msgspec.Struct, frozen=True):
    """A job of a claim, as qualgent_claim lists it (in run order)."""

    id: uuid.UUID
    test_path: str
    priority: str
    attempts: int
    max_attempts: int
    timeout_seconds: int | None


@dataclass(frozen=True, slots=True)
class Claim:
    group_id: uuid.UUID
    token: uuid.UUID
    org_id: str
    app_version_id: str
    target: str
    lease_expires_at: dt.datetime
    jobs: list[ClaimedJob] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Result:
    """What an agent reports for one run of one job."""

    exit_code: int | None
    duration_ms: int | None = None
    output_tail: str | None = None
    error: str | None = None
    outcome: Outcome | None = None  # given when the agent knows better than the exit code (timeout, install)
    error_location: str | None = None  # "path:line" of the first error, when the runner knows it
    retrying: bool = False  # a failed try the agent's runner retries itself: the job stays running (AppWright)
    final: bool = False  # no retry can help (a test file that is missing or holds no test): never retried

    @property
    def plain(self) -> bool:
        """Nothing the one-statement report (qualgent_report_runs) does not know about."""
        return self.error_location is None and not self.retrying


@dataclass(frozen=True, slots=True)
class HeldBuild:
    """A build an agent holds installed on its device for a target: among groups of equal tier and priority, the
    claim gives it that build's group first."""

    target: str
    org_id: str
    app_version_id: str


def _ranking(q: Queue, held: Sequence[HeldBuild]) -> dict[str, Any]:
    """What the claim ranks by besides tier, priority and age (docs/design.md, "3. The claim"): the settings'
    aging and chunk size, and the builds the agent holds."""
    builds = [{"target": b.target, "org_id": b.org_id, "app_version_id": b.app_version_id} for b in held]
    return {
        "aging_seconds": q.settings.aging_seconds,
        "held": msgspec.json.encode(builds).decode(),
        "min_chunk_seconds": q.settings.min_chunk_seconds,
    }


@metrics.timed_claim
async def claim(q: Queue, agent_id: uuid.UUID, targets: list[str], held: Sequence[HeldBuild] = ()) -> Claim | None:
    """Take the best pending group this agent can run, whole: one statement (qualgent_claim, in autocommit)."""
    params = {"agent_id": agent_id, "targets": targets, "lease_seconds": q.lease_seconds, **_ranking(q, held)}
    for _ in range(3):  # a group emptied by cancels or backoff is retired and the next one tried
        got = await q.db.value(P.claim, params)
        taken, again = await _take(q, agent_id, got)
        if not again:
            return taken
    return None


async def _take(q: Queue, agent_id: uuid.UUID, got: dict[str, Any]) -> tuple[Claim | None, bool]:
    """What qualgent_claim answered, as a Claim (or None), and whether to try again (a group was retired)."""
    if got["agent_status"] is None:
        raise NotFound(f"no agent {agent_id}: register first", agent_id=str(agent_id))
    group = got.get("group")
    if group is None:
        return None, False  # nothing to do, or the agent was set offline (by an operator, or deregistered)
    group_id = uuid.UUID(group["id"])
    split = got.get("split") or []
    if got["deferred"] or split or not got["jobs"]:
        # Rare: jobs still in backoff, and jobs split off for idle agents, go back to the queue, and a group left
        # with nothing to run (its jobs in backoff, or cancelled meanwhile) is retired, in a transaction of their own.
        back = [uuid.UUID(j) for j in [*got["deferred"], *split]]
        await _defer(q, group_id, back, retire=not got["jobs"])
    if not got["jobs"]:
        return None, True
    taken = Claim(
        group_id=group_id,
        token=uuid.UUID(group["token"]),
        org_id=group["org_id"],
        app_version_id=group["app_version_id"],
        target=group["target"],
        lease_expires_at=dt.datetime.fromisoformat(group["lease_expires_at"]),
        jobs=msgspec.convert(got["jobs"], list[ClaimedJob]),
    )
    return taken, False


async def _defer(q: Queue, group_id: uuid.UUID, deferred: list[uuid.UUID], retire: bool) -> None:
    """A claimed group's jobs still in backoff return to the queue; a group left with none to run is done (its
    agent was not made busy by it). Should this transaction not happen, the claim's lease lapses and rescue
    does the same."""
    async with q.db.transaction() as tx:
        await requeue(tx, deferred)
        if retire:
            await tx.execute(P.mark_group_done, {"group_id": group_id})


@dataclass(frozen=True, slots=True)
class Started:
    """The agent started this job `elapsed_ms` ago (it may report the start together with the result)."""

    job_id: uuid.UUID
    elapsed_ms: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    job_id: uuid.UUID
    status: str | None  # None: no such job
    detail: str


@dataclass(slots=True)
class Progress:
    """What a batch of starts and results did: the jobs as they are now, and what was refused."""

    started: list[Row] = field(default_factory=list)
    reported: list[Row] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    group_done: bool = False
    next_claim: Claim | None = None  # asked for with claim_next, when the report closed the group


async def report_progress(
    q: Queue,
    agent_id: uuid.UUID,
    group_id: uuid.UUID,
    token: uuid.UUID,
    starts: Sequence[Started],
    results: Sequence[tuple[uuid.UUID, Result]],
    claim_next: list[str] | None = None,
    held: Sequence[HeldBuild] = (),
) -> Progress:
    """Starts, then results, of a claimed group's jobs in one transaction: the agent's batched path (River's
    batch completer, on the agent's side). A fast test suite reports many jobs per request and per commit;
    a slow one reports each start and each result at once. Set-based SQL: the statement count does not grow
    with the batch. Refusals (a job cancelled meanwhile, not in this group) are committed with the rest.
    `claim_next` (the agent's targets): when the report closes the group, claim the agent's next one too (`held`:
    the builds it holds, as for a claim).

    The common report of a quick suite, runs that each started and ended their job within it, is one statement
    (qualgent_report_runs, and qualgent_claim in the same statement and commit when asked); anything else, or any
    surprise in it, takes the general path below.

    A job gets one final result per report: after it, another result for the job (say exit 0, then 3) is refused,
    never applied, so a job that reached a final state is not sent round again by a later line of the same report.
    Tries that the agent's runner retries itself (`retrying`, an AppWright run's --retries) may come before it."""
    starts, results, repeated = _first_of_each(starts, results)
    if repeated:
        progress = await report_progress(q, agent_id, group_id, token, starts, results, claim_next, held)
        progress.refused += _refuse_repeats(progress, repeated)
        return progress
    quick = (
        starts
        and {s.job_id for s in starts} == {job_id for job_id, _ in results}
        and len(starts) == len(results)
        and all(result.plain for _, result in results)
    )
    fast = await _report_runs(q, agent_id, group_id, token, starts, results, claim_next, held) if quick else None
    if fast is not None:
        progress, claimed = fast
        if claimed is not None:
            progress.next_claim = await _next(q, agent_id, claim_next, held, claimed)
    else:
        progress = await _report_in_transaction(q, agent_id, group_id, token, starts, results)
        if claim_next is not None and progress.group_done:
            progress.next_claim = await _next(q, agent_id, claim_next, held)
    _count(progress)
    if progress.group_done:
        history.record_group_soon(q.db, group_id, _failed(progress))
    return progress


async def _report_in_transaction(
    q: Queue,
    agent_id: uuid.UUID,
    group_id: uuid.UUID,
    token: uuid.UUID,
    starts: Sequence[Started],
    results: Sequence[tuple[uuid.UUID, Result]],
) -> Progress:
    """The general path of a report: the claim held, quick runs whole, then starts, then results, then the
    group closed or its lease extended, in one transaction."""
    progress = Progress()
    try:
        async with q.db.transaction() as tx:
            held = {"group_id": group_id, "token": token, "agent_id": agent_id}
            if not await tx.value(P.hold_claim, held):
                await _lock_claim(tx, agent_id, group_id, token)  # raises NotFound or StaleClaim
            ran = await _run(tx, agent_id, group_id, starts, results, progress) if starts and results else set()
            starts = [s for s in starts if s.job_id not in ran]
            results = [(job_id, result) for job_id, result in results if job_id not in ran]
            if starts:
                await _start(tx, agent_id, group_id, starts, progress)
            for round_ in _rounds(results):  # a job reported twice (a retried try, then its end): in order
                await _finish(tx, group_id, round_, progress)
            closing = {"group_id": group_id, "lease_seconds": q.lease_seconds}
            progress.group_done = await tx.value(P.close_group_and_free_agent, closing)
    except StaleClaim:
        # Refused, but the runs it tells of happened: on record in their jobs' history (qualgent.server.queue.orphans).
        await orphans.record(q, agent_id, group_id, token, _orphan_runs(starts, results))
        raise
    return progress


def _orphan_runs(starts: Sequence[Started], results: Sequence[tuple[uuid.UUID, Result]]) -> list[orphans.OrphanRun]:
    return orphans.runs_of(
        [(s.job_id, s.elapsed_ms) for s in starts],
        [
            (job_id, r.exit_code, r.duration_ms, r.error, None if r.outcome is None else r.outcome.value)
            for job_id, r in results
        ],
    )


def _first_of_each(
    starts: Sequence[Started], results: Sequence[tuple[uuid.UUID, Result]]
) -> tuple[list[Started], list[tuple[uuid.UUID, Result]], list[uuid.UUID]]:
    """The first start of each job in a report and its results up to its final one (the runner's retried tries
    before it), and the jobs whose result came again after that."""
    first_starts: dict[uuid.UUID, Started] = {}
    for start in starts:
        first_starts.setdefault(start.job_id, start)
    ended: set[uuid.UUID] = set()  # jobs whose final result (one not `retrying`) came already
    first_results: list[tuple[uuid.UUID, Result]] = []
    repeated: list[uuid.UUID] = []
    for job_id, result in results:
        if job_id in ended:
            repeated.append(job_id)
            continue
        first_results.append((job_id, result))
        if not result.retrying:
            ended.add(job_id)
    return list(first_starts.values()), first_results, repeated


def _refuse_repeats(progress: Progress, repeated: list[uuid.UUID]) -> list[Refusal]:
    """A second result for one job in one report, refused: the job is as the first one left it."""
    now: dict[uuid.UUID, str | None] = {r.job_id: r.status for r in reversed(progress.refused)}
    now.update({row["id"]: row["status"] for row in progress.started + progress.reported})
    detail = "job {} has a result in this report already"
    return [Refusal(job_id, now.get(job_id), detail.format(job_id)) for job_id in repeated]


async def _next(
    q: Queue,
    agent_id: uuid.UUID,
    targets: list[str] | None,
    held: Sequence[HeldBuild],
    claimed: dict[str, Any] | None = None,
) -> Claim | None:
    """The next group for an agent whose report closed its last one: what the report's statement claimed, or a
    claim of its own. The report is committed: an agent gone meanwhile just gets none."""
    try:
        if claimed is not None:
            taken, again = await _take(q, agent_id, claimed)
            if not again:
                return taken
        return await claim(q, agent_id, targets or [], held)
    except NotFound:
        return None


def _failed(progress: Progress) -> bool:
    return any(job["status"] == JobStatus.FAILED for job in progress.reported)


def _count(progress: Progress) -> None:
    metrics.jobs_started(progress.started)
    metrics.jobs_finished(progress.reported)


def _runs(started: Mapping[uuid.UUID, Started], results: Sequence[tuple[uuid.UUID, Result]]) -> str:
    """Runs started and finished within one report, as the JSON the stored functions read."""
    return msgspec.json.encode(
        [
            {
                "id": job_id,
                "elapsed_ms": started[job_id].elapsed_ms,
                "outcome": outcome_of(result).value,
                "exit_code": result.exit_code,
                "duration_ms": result.duration_ms,
                "output_tail": _tail(result.output_tail),
                "error": result.error,
                "final": result.final,
            }
            for job_id, result in results
        ]
    ).decode()


async def _report_runs(
    q: Queue,
    agent_id: uuid.UUID,
    group_id: uuid.UUID,
    token: uuid.UUID,
    starts: Sequence[Started],
    results: Sequence[tuple[uuid.UUID, Result]],
    claim_next: list[str] | None,
    held: Sequence[HeldBuild],
) -> tuple[Progress, dict[str, Any] | None] | None:
    """The one-statement report, with what qualgent_claim answered when a claim was asked for and the group
    closed; None when the general path must decide (the claim is not held, or a run does not end its job: a
    retry, a job cancelled meanwhile)."""
    params = {
        "agent_id": agent_id,
        "group_id": group_id,
        "token": token,
        "lease_seconds": q.lease_seconds,
        "runs": _runs({s.job_id: s for s in starts}, results),
        "targets": claim_next,
        **_ranking(q, held),
    }
    try:
        answer, claimed = await q.db.tuple_row(
            P.report_runs if claim_next is None else P.report_runs_then_claim, params
        )
    except psycopg.Error as err:
        if err.sqlstate == RUNS_DID_NOT_ALL_END:
            return None
        raise
    if answer is None:
        return None
    jobs = _ids_typed(answer["ran"])
    return Progress(started=jobs, reported=jobs, group_done=answer["group_done"]), claimed


_UUIDS = list[uuid.UUID]


def _ids_typed(jobs: list[dict[str, Any]]) -> list[Row]:
    """Jobs as the hot path's functions describe them in JSON, their ids made UUIDs (all in one msgspec call, not
    uuid.UUID() id by id: a report and its next claim hold tens of them)."""
    for job, job_id in zip(jobs, msgspec.convert([job["id"] for job in jobs], _UUIDS), strict=True):
        job["id"] = job_id
    return jobs


async def _run(
    tx: Tx,
    agent_id: uuid.UUID,
    group_id: uuid.UUID,
    starts: Sequence[Started],
    results: Sequence[tuple[uuid.UUID, Result]],
    progress: Progress,
) -> set[uuid.UUID]:
    """Jobs started and finished within this report whose run ends them: one write each (qualgent_run_jobs
    decides which). Anything else (a retry to schedule, a job cancelled meanwhile) takes the two-step path.
    Returns the ids done here."""
    started = {s.job_id: s for s in starts}
    # A job reported twice (a try its runner retried, then its end) or with more than an exit code to record takes
    # the general path, in order.
    reports = Counter(job_id for job_id, _ in results)
    special = {job_id for job_id, result in results if not result.plain or reports[job_id] > 1}
    both = [(job_id, result) for job_id, result in results if job_id in started and job_id not in special]
    if not both:
        return set()
    params = {"agent_id": agent_id, "group_id": group_id, "runs": _runs(started, both)}
    rows = await tx.rows(P.run_jobs, params)
    progress.started += rows
    progress.reported += rows
    return {r["id"] for r in rows}


async def _start(
    tx: Tx, agent_id: uuid.UUID, group_id: uuid.UUID, starts: Sequence[Started], progress: Progress
) -> None:
    params = {
        "job_ids": [s.job_id for s in starts],
        "elapsed_ms": [s.elapsed_ms for s in starts],
        "agent_id": agent_id,
        "group_id": group_id,
    }
    started = await tx.rows(P.start_jobs, params)
    progress.started += started  # after the jobs that started and ended within this report (_run), if any
    missing = {s.job_id for s in starts} - {j["id"] for j in started}
    if missing:  # cancelled (or moved) since the claim
        for job in await tx.rows(P.get_jobs, {"job_ids": list(missing)}):
            missing.discard(job["id"])
            progress.refused.append(
                Refusal(job["id"], job["status"], f"job {job['id']} is {job['status']}, not pending in this group")
            )
        progress.refused += [Refusal(job_id, None, f"no job {job_id}") for job_id in missing]


def _rounds(results: Sequence[tuple[uuid.UUID, Result]]) -> list[list[tuple[uuid.UUID, Result]]]:
    """The results in rounds that name each job once, in the order they came."""
    rounds: list[list[tuple[uuid.UUID, Result]]] = []
    seen: list[set[uuid.UUID]] = []
    for job_id, result in results:
        last = next((i for i in range(len(rounds) - 1, -1, -1) if job_id in seen[i]), -1)
        if last + 1 == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[last + 1].append((job_id, result))
        seen[last + 1].add(job_id)
    return rounds


async def _finish(
    tx: Tx,
    group_id: uuid.UUID,
    results: Sequence[tuple[uuid.UUID, Result]],
    progress: Progress,
) -> None:
    """Results of running jobs: each run's attempt closed and its job moved on as qualgent_settle decides (in
    finish_runs); what is not a running job's result is refused here, and nothing else is decided here."""
    jobs = {j["id"]: j for j in await tx.rows(P.lock_jobs, {"job_ids": [r[0] for r in results]})}
    closing: list[tuple[Row, Outcome, Result]] = []  # attempts to close; their jobs, if running, are settled
    in_place: list[tuple[Row, Outcome, Result]] = []  # tries the agent's runner retries itself
    for job_id, result in results:
        job = jobs.get(job_id)
        if job is None:
            progress.refused.append(Refusal(job_id, None, f"no job {job_id}"))
        elif job["group_id"] != group_id:
            progress.refused.append(Refusal(job_id, job["status"], f"job {job_id} is not in group {group_id}"))
        elif job["status"] == JobStatus.CANCELLED:
            # The run ends the attempt and may end the group; the job stays cancelled.
            closing.append((job, Outcome.CANCELLED, result))
            progress.refused.append(
                Refusal(job_id, job["status"], f"job {job_id} was cancelled; its result is not recorded")
            )
        elif job["status"] != JobStatus.RUNNING:
            progress.refused.append(Refusal(job_id, job["status"], f"job {job_id} is {job['status']}, not running"))
        elif result.retrying and outcome_of(result) == Outcome.TEST_FAILED and job["attempts"] < job["max_attempts"]:
            in_place.append((job, Outcome.TEST_FAILED, result))
        else:
            closing.append((job, outcome_of(result), result))
    progress.reported += await _requeue_retried(tx, await _finish_runs(tx, closing))
    if in_place:
        progress.reported += await _retry_in_place(tx, in_place)


async def _finish_runs(tx: Tx, closing: list[tuple[Row, Outcome, Result]]) -> list[Row]:
    """Close these runs' attempts and settle their jobs that are still running (finish_runs, qualgent_settle)."""
    if not closing:
        return []
    params = {
        **_attempt_columns(closing),
        "finals": [r.final for _, _, r in closing],
        "output_tails": [_tail(r.output_tail) for _, _, r in closing],
    }
    return await tx.rows(P.finish_runs, params)


async def _requeue_retried(tx: Tx, settled: list[Row]) -> list[Row]:
    """Jobs finish_runs sent round again (pending, after their backoff) join their key's pending group; the rows
    as they are then."""
    retried = [row["id"] for row in settled if row["status"] == JobStatus.PENDING]
    if not retried:
        return settled
    await requeue(tx, retried)
    moved = {row["id"]: row for row in await tx.rows(P.get_jobs, {"job_ids": retried})}
    return [moved.get(row["id"], row) for row in settled]


async def _retry_in_place(tx: Tx, tries: list[tuple[Row, Outcome, Result]]) -> list[Row]:
    return await tx.rows(P.retry_in_place, _attempt_columns(tries))


def _attempt_columns(runs: list[tuple[Row, Outcome, Result]]) -> dict[str, list[Any]]:
    """What closing these runs' attempts writes, as the arrays finish_runs and retry_in_place read (one per column)."""
    return {
        "job_ids": [j["id"] for j, _, _ in runs],
        "numbers": [j["attempts"] for j, _, _ in runs],
        "outcomes": [o.value for _, o, _ in runs],
        "exit_codes": [r.exit_code for _, _, r in runs],
        "durations": [r.duration_ms for _, _, r in runs],
        "errors": [r.error for _, _, r in runs],
        "error_locations": [r.error_location for _, _, r in runs],
    }


async def start_job(q: Queue, agent_id: uuid.UUID, group_id: uuid.UUID, token: uuid.UUID, job_id: uuid.UUID) -> Row:
    """The agent is about to run this job: it becomes running and an attempt is opened."""
    progress = await report_progress(q, agent_id, group_id, token, [Started(job_id)], [])
    _raise_refusal(progress)
    return progress.started[0]


async def report_result(
    q: Queue, agent_id: uuid.UUID, group_id: uuid.UUID, token: uuid.UUID, job_id: uuid.UUID, result: Result
) -> Row:
    """Record how a run ended and move the job on: completed, failed, or back to pending for a retry."""
    progress = await report_progress(q, agent_id, group_id, token, [], [(job_id, result)])
    _raise_refusal(progress)
    return progress.reported[0]


def _raise_refusal(progress: Progress) -> None:
    """One job's refusal as the error the single-job routes answer (after the commit: what the refused
    report closed, such as the group, stands)."""
    for refusal in progress.refused:
        if refusal.status is None:
            raise NotFound(refusal.detail, job_id=str(refusal.job_id))
        raise Conflict(refusal.detail, status=refusal.status)


def outcome_of(result: Result) -> Outcome:
    """The exit code decides (0 passed, 1 test failed, else infrastructure); an agent's own word counts only
    where there is no exit code to go by (a timeout, a failed install, a kill) or to say it was cancelled."""
    by_code = classify_exit_code(result.exit_code)
    if result.outcome is None or (result.exit_code is not None and result.outcome != Outcome.CANCELLED):
        return by_code
    return result.outcome


async def heartbeat(q: Queue, agent_id: uuid.UUID, claims: dict[uuid.UUID, uuid.UUID]) -> dict[str, Any]:
    """Extend the leases the agent still holds; say which of its claims are lost and which of its
    running jobs were cancelled. One statement (a thousand agents beat every 10 s)."""
    params = {
        "agent_id": agent_id,
        "group_ids": list(claims),
        "tokens": list(claims.values()),
        "lease_seconds": q.lease_seconds,
    }
    known, held, cancelled = await q.db.tuple_row(P.heartbeat, params)
    if not known:
        raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return {
        "held": sorted(held, key=str),
        "lost": sorted(set(claims) - set(held), key=str),
        "cancelled_job_ids": cancelled,
    }


async def release(q: Queue, agent_id: uuid.UUID, group_id: uuid.UUID, token: uuid.UUID, reason: str) -> None:
    """The agent gives the group back (shutting down): its unfinished jobs return to the queue."""
    async with q.db.transaction() as tx:
        await _lock_claim(tx, agent_id, group_id, token)
        await _hand_back(tx, group_id, agent_id, reason)


class _Lapsed(msgspec.Struct, frozen=True):
    """A lapsed_claims row."""

    id: uuid.UUID
    agent_id: uuid.UUID | None


async def rescue_lapsed(q: Queue, limit: int = 100) -> int:
    """Hand back every claim whose lease lapsed: its agent is presumed dead. Safe on many servers."""
    async with q.db.transaction() as tx:
        groups = await tx.rows(P.lapsed_claims, {"limit": limit}, _Lapsed)
        for group in groups:
            await _hand_back(tx, group.id, group.agent_id, "agent lost: its lease expired")
        return len(groups)


async def _hand_back(tx: Tx, group_id: uuid.UUID, agent_id: uuid.UUID | None, reason: str) -> None:
    """The group is done; its interrupted job's run ends as an infrastructure error (settled like any other: retried
    if it may be) and the group's other unfinished jobs go back to pending untouched."""
    interrupted = await tx.values(P.running_attempt_of_group, {"group_id": group_id})
    if interrupted:
        jobs = await tx.rows(P.lock_jobs, {"job_ids": interrupted})
        closing = [
            # cancelled mid-run, and its agent never said so: the attempt closes, the job stays cancelled
            (job, Outcome.CANCELLED, Result(exit_code=None, error=reason))
            if job["status"] == JobStatus.CANCELLED
            else (job, Outcome.INFRA_ERROR, Result(exit_code=None, error=reason, outcome=Outcome.INFRA_ERROR))
            for job in jobs
        ]
        for row in await _finish_runs(tx, closing):
            metrics.job_finished(row)
    await requeue(tx, await tx.values(P.group_jobs_to_run, {"group_id": group_id}))
    await tx.execute(P.mark_group_done, {"group_id": group_id})
    if agent_id is not None:
        await tx.execute(P.agent_idle_if_free, {"agent_id": agent_id})


async def _lock_claim(tx: Tx, agent_id: uuid.UUID, group_id: uuid.UUID, token: uuid.UUID) -> None:
    group = await tx.first(P.lock_claim, {"group_id": group_id})
    if group is None:
        raise NotFound(f"no group {group_id}", group_id=str(group_id))
    if group["status"] != GroupStatus.RUNNING or group["lease_token"] != token or group["agent_id"] != agent_id:
        raise StaleClaim(group_id=str(group_id))


def _tail(output: str | None) -> str | None:
    if output is None or len(output) <= OUTPUT_TAIL_LIMIT:
        return output
    return output[-OUTPUT_TAIL_LIMIT:]
