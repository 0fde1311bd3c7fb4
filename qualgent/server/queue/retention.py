"""Retention: finished work older than the retention period is folded into the reporting rollups and deleted.

    prune       one pass, oldest first, in bounded batches of one transaction each:
                  1. finished jobs (completed | failed | cancelled) and their attempts, folded first into
                     reporting.daily_job_stats, daily_latency, test_run_tails (tables of the baseline migration);
                  2. done groups no job points at any more, folded into reporting.daily_installs;
                  3. idempotency keys (submissions).
    prune_loop  what every server runs: a pass an hour; one pruner at a time across servers (an advisory lock).

Pending and running jobs, pending and running groups, agents, orgs and tokens are never deleted. A batch
folds and deletes in the same transaction, so the reporting views (which add the rollups to the live rows)
count every job exactly once whenever they are read. docs/storage.md ("Retention") is the user's view.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import msgspec

from qualgent.server.db.database import Database, Tx
from qualgent.server.db.sql import RETENTION as R

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000
"""Jobs (or groups, or keys) per transaction: a few tens of milliseconds of locks, never one huge delete."""
PRUNE_INTERVAL = 3_600.0
"""Seconds between a server's passes."""
FIRST_PRUNE_DELAY = 60.0
"""Seconds after a server starts before its first pass: a server started for a moment does not prune."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one pass deleted (or, for a dry run, would delete)."""

    cutoff: dt.datetime
    dry_run: bool
    jobs: int = 0
    attempts: int = 0
    groups: int = 0
    submissions: int = 0
    batches: int = 0
    seconds: float = 0.0
    skipped: bool = False  # another pruner held the lock; nothing was done
    oldest_finished_at: dt.datetime | None = None  # dry run: the oldest finished job kept so far

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cutoff"] = self.cutoff.isoformat()
        data["oldest_finished_at"] = self.oldest_finished_at.isoformat() if self.oldest_finished_at else None
        data["seconds"] = round(self.seconds, 3)
        return data


class _Counts(msgspec.Struct, frozen=True):
    jobs: int
    attempts: int
    groups: int
    submissions: int
    oldest_finished_at: dt.datetime | None


class _Busy(Exception):
    """Another pruner holds the lock."""


async def prune(
    db: Database,
    older_than: dt.timedelta,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    wait_for_lock: bool = True,
    pause: float = 0.0,
) -> PruneReport:
    """Fold and delete what finished before now() - older_than (the database's clock), in batches.

    wait_for_lock=False (servers): give up at once, with skipped=True, when another pruner is at work.
    pause: seconds between batches, to leave the hot path room on a busy database."""
    if older_than <= dt.timedelta(0):
        raise ValueError("older_than must be positive")
    began = time.perf_counter()
    cutoff: dt.datetime = await db.value(R.cutoff, {"age": older_than})
    if dry_run:
        counts = await db.one(R.prunable_counts, {"cutoff": cutoff}, row=_Counts)
        return PruneReport(
            cutoff,
            dry_run=True,
            jobs=counts.jobs,
            attempts=counts.attempts,
            groups=counts.groups,
            submissions=counts.submissions,
            oldest_finished_at=counts.oldest_finished_at,
            seconds=time.perf_counter() - began,
        )
    totals = {"jobs": 0, "attempts": 0, "groups": 0, "submissions": 0, "batches": 0}
    skipped = False
    try:
        for step in (_jobs_batch, _groups_batch, _submissions_batch):
            while True:
                async with db.transaction() as tx:
                    await _lock(tx, wait_for_lock)
                    selected, deleted = await step(tx, cutoff, batch_size)
                totals["batches"] += 1 if selected else 0
                for key, count in deleted.items():
                    totals[key] += count
                if selected < batch_size:
                    break
                await asyncio.sleep(pause)
    except _Busy:
        skipped = True
    return PruneReport(
        cutoff,
        dry_run=False,
        jobs=totals["jobs"],
        attempts=totals["attempts"],
        groups=totals["groups"],
        submissions=totals["submissions"],
        batches=totals["batches"],
        seconds=time.perf_counter() - began,
        skipped=skipped,
    )


async def _lock(tx: Tx, wait: bool) -> None:
    if wait:
        await tx.execute(R.prune_lock)
    elif not await tx.value(R.try_prune_lock):
        raise _Busy


_Batch = tuple[int, dict[str, int]]  # rows selected, and what was deleted


async def _jobs_batch(tx: Tx, cutoff: dt.datetime, limit: int) -> _Batch:
    """The oldest finished jobs and their attempts: folded into the rollups, then deleted."""
    ids: list[uuid.UUID] = await tx.values(R.prunable_jobs, {"cutoff": cutoff, "limit": limit})
    if not ids:
        return 0, {}
    params = {"job_ids": ids}
    for fold in (R.fold_jobs, R.fold_latency, R.carry_group_attempts):
        await tx.execute(fold, params)
    attempts = await tx.execute(R.delete_attempts, params)
    jobs = await tx.execute(R.delete_jobs, params)
    return len(ids), {"jobs": jobs, "attempts": attempts}


async def _groups_batch(tx: Tx, cutoff: dt.datetime, limit: int) -> _Batch:
    """Done groups with no job left in them: their installs folded, then deleted."""
    ids: list[uuid.UUID] = await tx.values(R.prunable_groups, {"cutoff": cutoff, "limit": limit})
    if not ids:
        return 0, {}
    params = {"group_ids": ids}
    await tx.execute(R.fold_groups, params)
    await tx.execute(R.forget_carried_attempts, params)
    groups = await tx.execute(R.delete_groups, params)
    return len(ids), {"groups": groups}


async def _submissions_batch(tx: Tx, cutoff: dt.datetime, limit: int) -> _Batch:
    deleted = await tx.execute(R.delete_submissions, {"cutoff": cutoff, "limit": limit})
    return deleted, {"submissions": deleted}


async def prune_loop(
    db: Database,
    retention_days: float,
    interval: float = PRUNE_INTERVAL,
    first_delay: float = FIRST_PRUNE_DELAY,
) -> None:
    """Every server runs this (api/app.py, beside the lease rescue). Retention 0 means keep everything."""
    if retention_days <= 0:
        return
    await asyncio.sleep(first_delay)
    while True:
        try:
            report = await prune(db, dt.timedelta(days=retention_days), wait_for_lock=False, pause=0.05)
            if report.jobs or report.groups or report.submissions:
                log.info(
                    "pruned %d job(s), %d attempt(s), %d group(s), %d idempotency key(s) finished before %s "
                    "in %.1fs (folded into the reporting rollups first)",
                    report.jobs,
                    report.attempts,
                    report.groups,
                    report.submissions,
                    report.cutoff.isoformat(),
                    report.seconds,
                )
        except Exception:
            log.warning("pruning failed; trying again in %.0fs", interval, exc_info=True)
        await asyncio.sleep(interval)
