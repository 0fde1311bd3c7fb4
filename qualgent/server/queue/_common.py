"""What the queue modules share: notifications and moving jobs back into their key's pending group."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from qualgent.server.db.database import Tx
from qualgent.server.db.sql import P

# An agent silent for a whole lease is shown offline, whatever it last said: a live agent beats every third of a
# lease, so one lease of silence is two missed beats (a kill -9, a frozen host, a cut network). Its claim lapses at
# the same moment, so an agent shown idle or busy is one whose lease would still hold.
OFFLINE_AFTER_LEASES = 1


class GroupKey(NamedTuple):
    """What jobs are grouped by. A named tuple: a bulk submit hashes and compares one per job."""

    org_id: str
    app_version_id: str
    target: str


class KeyOfJobs(msgspec.Struct, frozen=True):
    """A job_keys_of row: the scheduling keys of jobs going back to the queue, per (org, app version, target)."""

    org_id: str
    app_version_id: str
    target: str
    best_priority: str
    oldest_job_at: dt.datetime
    available_at: dt.datetime
    job_count: int


class PendingGroup(msgspec.Struct, frozen=True):
    """An upsert_pending_groups row."""

    id: uuid.UUID
    org_id: str
    app_version_id: str
    target: str


@dataclass(frozen=True, slots=True)
class GroupAggregate:
    key: GroupKey
    best_priority: str
    oldest_job_at: dt.datetime
    available_at: dt.datetime
    job_count: int


async def notify_jobs(tx: Tx, status: str, job_ids: Iterable[uuid.UUID | str] | str) -> None:
    """Tell listeners (waiting clients, other servers) which jobs changed, in the changing transaction:
    ids only, one channel, chunked under PostgreSQL's payload limit (qualgent_notify_jobs, schema.sql).
    `job_ids` may be an array literal already ("{id,id}"): a bulk submit's thousands of ids pass as one text
    rather than as an array psycopg would build id by id."""
    if isinstance(job_ids, str):
        ids: list[uuid.UUID] | str = job_ids
    else:
        ids = [uuid.UUID(str(job_id)) if not isinstance(job_id, uuid.UUID) else job_id for job_id in job_ids]
    if ids and ids != "{}":
        await tx.execute(P.notify_jobs, {"status": str(status), "job_ids": ids})


async def notify_work_available(tx: Tx, targets: Iterable[str]) -> None:
    payload = json.dumps({"kind": "work", "targets": sorted(set(targets))})
    await tx.execute(P.notify, {"payloads": [payload]})


async def upsert_pending_groups(tx: Tx, aggregates: Sequence[GroupAggregate]) -> dict[GroupKey, uuid.UUID]:
    """Each key's pending group, made or grown to take these jobs."""
    if not aggregates:
        return {}
    rows = await tx.rows(
        P.upsert_pending_groups,
        {
            "org_ids": [a.key.org_id for a in aggregates],
            "app_version_ids": [a.key.app_version_id for a in aggregates],
            "targets": [a.key.target for a in aggregates],
            "best_priorities": [a.best_priority for a in aggregates],
            "oldest_job_ats": [a.oldest_job_at for a in aggregates],
            "available_ats": [a.available_at for a in aggregates],
            "job_counts": [a.job_count for a in aggregates],
        },
        PendingGroup,
    )
    return {GroupKey(r.org_id, r.app_version_id, r.target): r.id for r in rows}


async def requeue(tx: Tx, job_ids: Sequence[uuid.UUID]) -> None:
    """Move pending jobs to their key's pending group (made if there is none). Used by claim (jobs still in
    backoff), retry, re-run, release and rescue: one way back into the queue. Only a pending job moves
    (move_jobs_to_groups): the status change that made it pending was its own statement's."""
    if not job_ids:
        return
    rows = await tx.rows(P.job_keys_of, {"job_ids": list(job_ids)}, KeyOfJobs)
    aggregates = [
        GroupAggregate(
            GroupKey(r.org_id, r.app_version_id, r.target),
            r.best_priority,
            r.oldest_job_at,
            r.available_at,
            r.job_count,
        )
        for r in rows
    ]
    groups = await upsert_pending_groups(tx, aggregates)
    keys = list(groups)
    await tx.execute(
        P.move_jobs_to_groups,
        {
            "job_ids": list(job_ids),
            "group_ids": [groups[k] for k in keys],
            "org_ids": [k.org_id for k in keys],
            "app_version_ids": [k.app_version_id for k in keys],
            "targets": [k.target for k in keys],
        },
    )
    await notify_work_available(tx, (k.target for k in keys))
