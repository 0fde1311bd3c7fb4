"""Submitting, reading, listing and cancelling jobs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from qualgent.domain import Conflict, InvalidInput, JobStatus, NotFound, Priority, Target
from qualgent.server.db.database import Row, Tx
from qualgent.server.db.sql import P
from qualgent.server.observability import metrics
from qualgent.server.queue import selection
from qualgent.server.queue._common import (
    GroupAggregate,
    GroupKey,
    notify_jobs,
    notify_work_available,
    requeue,
    upsert_pending_groups,
)
from qualgent.server.queue.core import Queue


# JobSpec and NewJob are made 10,000 at a time by a bulk submit: named tuples, immutable like a frozen dataclass
# and cheaper to make (a frozen dataclass sets each field through object.__setattr__).
class JobSpec(NamedTuple):
    """One job as submitted (already validated by the caller's schema)."""

    org_id: str
    app_version_id: str
    test_path: str
    priority: Priority = Priority.MEDIUM
    target: Target = Target.EMULATOR
    max_attempts: int = 3
    test_retries: int = 0
    timeout_seconds: int | None = None

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.org_id, self.app_version_id, str(self.target))  # its value (str() of a StrEnum)


class NewJob(NamedTuple):
    """A job as just inserted. Everything else in its row is the table's default (pending, no attempts, no
    result, every timestamp the transaction's now()): known without reading 10,000 rows back."""

    id: uuid.UUID
    spec: JobSpec
    group_id: uuid.UUID
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Submitted:
    jobs: list[NewJob] | list[Row]  # rows read back only for a replay
    replayed: bool = False  # the idempotency key was seen before: these are the jobs it made then
    warnings: tuple[str, ...] = ()  # e.g. a new org whose id differs from an existing one only by case


async def submit(
    q: Queue,
    specs: Sequence[JobSpec],
    idempotency_key: str | None = None,
    auto_create_orgs: bool = True,
) -> Submitted:
    """Queue jobs in one transaction: all of them or none. Returns them in the order given. With an
    idempotency key, the same submission sent again returns the jobs of the first one; the same key
    with a different submission is a Conflict. An unknown org is created (standard tier) unless
    `auto_create_orgs` is false, when it is refused (InvalidInput naming it).

    The jobs' ids ascend in the order given, so a group's jobs of one submission, which share created_at (the
    transaction's time), run in submission order: the claim orders a group's jobs by priority, created_at, id."""
    ids = sorted_ids(len(specs))
    async with q.db.transaction() as tx:
        if idempotency_key is not None:
            request_hash = _request_hash(specs)
            params = {"key": idempotency_key, "request_hash": request_hash, "job_ids": ids}
            if await tx.first(P.claim_idempotency_key, params) is None:
                return await _replay(tx, idempotency_key, request_hash)
        created = await _create_orgs(tx, sorted({s.org_id for s in specs}), auto_create_orgs)
        return Submitted(await submit_in(tx, specs, ids, orgs_known=True), warnings=created)


async def _create_orgs(tx: Tx, org_ids: list[str], auto_create: bool) -> tuple[str, ...]:
    """Create the orgs not seen before; warnings for those whose id looks like a typo of an existing one
    (another case, surrounding whitespace). With auto_create off, a new org is refused, naming it."""
    created: list[str] = await tx.values(P.upsert_orgs, {"org_ids": org_ids})
    if not created:
        return ()
    normalized = {org: org.strip().lower() for org in created}
    rows = await tx.rows(P.orgs_like, {"normalized": sorted(set(normalized.values())), "org_ids": created})
    like: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        like[row["normalized"]].append(row["id"])
    hints = {org: like[normalized[org]] for org in created if like.get(normalized[org])}
    if not auto_create:
        org = created[0]
        hint = f"; did you mean {', '.join(map(repr, hints[org]))}?" if org in hints else ""
        raise InvalidInput(
            f"unknown org {org!r}: this server does not create orgs on submit (QUALGENT_AUTO_CREATE_ORGS=false); "
            f"an admin creates one with `qgjob org set-tier --org-id ... --tier ...`{hint}",
            field="org_id",
            org_id=org,
        )
    return tuple(
        f"org {org!r} was created, but differs from the existing org {', '.join(map(repr, existing))} only by case "
        "or whitespace: a typo?"
        for org, existing in hints.items()
    )


async def _replay(tx: Tx, key: str, request_hash: str) -> Submitted:
    first = await tx.one(P.submission_of_key, {"key": key})
    if first["request_hash"] != request_hash:
        raise Conflict(f"idempotency key {key!r} was already used for a different submission", idempotency_key=key)
    rows = {r["id"]: r for r in await tx.rows(P.get_jobs, {"job_ids": first["job_ids"]})}
    return Submitted([rows[job_id] for job_id in first["job_ids"] if job_id in rows], replayed=True)


def _request_hash(specs: Sequence[JobSpec]) -> str:
    fields = ("org_id", "app_version_id", "test_path", "priority", "target", "max_attempts", "test_retries")
    rows = [[str(getattr(getattr(s, name), "value", getattr(s, name))) for name in fields] for s in specs]
    rows = [[*row, str(s.timeout_seconds)] for row, s in zip(rows, specs, strict=True)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def sorted_ids(count: int) -> list[uuid.UUID]:
    """`new_ids`, ascending. Sorted as 16-byte strings (compared in C; sorting the UUIDs would compare them in
    Python), which is the order of both Python's UUID and PostgreSQL's uuid."""
    return [uuid.UUID(bytes=chunk) for chunk in sorted(_random_uuid_bytes(count))]


def new_ids(count: int) -> list[uuid.UUID]:
    """Random (version 4) UUIDs from one read of the system's random source rather than one per id."""
    return [uuid.UUID(bytes=chunk) for chunk in _random_uuid_bytes(count)]


def _random_uuid_bytes(count: int) -> list[bytes]:
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    return [bytes(raw[i : i + 16]) for i in range(0, 16 * count, 16)]


async def submit_in(
    tx: Tx, specs: Sequence[JobSpec], ids: Sequence[uuid.UUID] | None = None, orgs_known: bool = False
) -> list[NewJob]:
    if not specs:
        return []
    now = await tx.value(P.transaction_time)
    if not orgs_known:
        await tx.execute(P.upsert_orgs, {"org_ids": sorted({s.org_id for s in specs})})
    keys = [s.key for s in specs]
    groups = await upsert_pending_groups(tx, _aggregate(specs, keys, now))
    ids = list(ids) if ids is not None else new_ids(len(specs))
    group_ids = [groups[key] for key in keys]
    group_text = {key: str(group_id) for key, group_id in groups.items()}  # once per group, not once per job
    # COPY, the bulk path PostgreSQL parses fastest (faster than INSERT ... SELECT of the same rows), on the
    # transaction's own psycopg connection, written as blocks of COPY text (psycopg's row-by-row formatting
    # cost more than PostgreSQL's parsing of it). Defaults (status, attempts, timestamps) are the table's, which
    # NewJob mirrors instead of reading the rows back.
    id_texts = [str(job_id) for job_id in ids]
    group_texts = [group_text[key] for key in keys]
    texts = [(s.org_id, s.app_version_id, s.test_path) for s in specs]
    async with tx.connection.cursor().copy(P.copy_jobs) as copy:
        # In blocks, so PostgreSQL parses one while the next is formatted.
        for start in range(0, len(specs), COPY_BLOCK):
            end = start + COPY_BLOCK
            await copy.write(
                _copy_block(id_texts[start:end], specs[start:end], texts[start:end], group_texts[start:end])
            )
    await notify_jobs(tx, JobStatus.PENDING, "{" + ",".join(id_texts) + "}")
    await notify_work_available(tx, (s.target.value for s in specs))
    return [NewJob(job_id, s, group_id, now) for job_id, s, group_id in zip(ids, specs, group_ids, strict=True)]


_RANK = {p: rank for rank, p in enumerate(Priority)}
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_COPY_NULL = "\\N"
COPY_BLOCK = 1000  # jobs per block of COPY text


def _copy_block(
    ids: Sequence[str], specs: Sequence[JobSpec], texts: Sequence[tuple[str, str, str]], groups: Sequence[str]
) -> str:
    """Jobs as a block of COPY text, in copy_jobs's column order (queries.sql). Escaping every value costs more
    than the rest: it is done only when some value needs it (the API refuses control characters, so in practice only a
    backslash), seen in the block as a backslash other than those of the NULL markers written for jobs without
    a timeout, a carriage return, or more separators than the columns make."""
    block = _copy_rows(ids, specs, texts, groups)
    nulls = sum(1 for s in specs if s.timeout_seconds is None)  # each writes one backslash: \N
    if (
        block.count("\\") != nulls
        or "\r" in block
        or block.count("\t") != 10 * len(ids)
        or block.count("\n") != len(ids)
    ):
        escaped = [(_copy_text(org), _copy_text(version), _copy_text(path)) for org, version, path in texts]
        block = _copy_rows(ids, specs, escaped, groups)
    return block


def _copy_rows(
    ids: Sequence[str], specs: Sequence[JobSpec], texts: Sequence[tuple[str, str, str]], groups: Sequence[str]
) -> str:
    return "".join(
        f"{job_id}\t{org}\t{version}\t{s.target.value}\t{path}\t{s.priority.value}\t{s.max_attempts}\t"
        f"{s.max_attempts}\t{s.test_retries}\t{_COPY_NULL if s.timeout_seconds is None else s.timeout_seconds}\t"
        f"{group}\n"
        for job_id, s, (org, version, path), group in zip(ids, specs, texts, groups, strict=True)
    )


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, and the row and column separators, escaped."""
    return value.translate(_COPY_ESCAPES)


def _aggregate(specs: Sequence[JobSpec], keys: Sequence[GroupKey], now: Any) -> list[GroupAggregate]:
    best: dict[GroupKey, Priority] = {}
    counts: dict[GroupKey, int] = defaultdict(int)
    for spec, key in zip(specs, keys, strict=True):
        counts[key] += 1
        if key not in best or _RANK[spec.priority] < _RANK[best[key]]:
            best[key] = spec.priority
    return [GroupAggregate(key, best[key].value, now, now, count) for key, count in counts.items()]


async def get(q: Queue, job_id: uuid.UUID, with_attempts: bool = False) -> dict[str, Any]:
    async with q.db.connection() as tx:
        job = await tx.first(P.get_job, {"job_id": job_id})
        if job is None:
            raise NotFound(f"no job {job_id}", job_id=str(job_id))
        if with_attempts:
            job["attempt_history"] = await tx.rows(P.job_attempts, {"job_id": job_id})
        return job


async def get_many(q: Queue, job_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The jobs, in the order asked; NotFound names every id that does not exist."""
    rows = {r["id"]: r for r in await q.db.rows(P.get_jobs, {"job_ids": list(job_ids)})}
    missing = [str(job_id) for job_id in job_ids if job_id not in rows]
    if missing:
        raise NotFound(f"no job {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""), job_ids=missing)
    return [rows[job_id] for job_id in job_ids]


@dataclass(frozen=True, slots=True)
class JobFilter:
    org_id: str | None = None
    status: JobStatus | None = None
    app_version_id: str | None = None
    target: Target | None = None
    group_id: uuid.UUID | None = None
    before: uuid.UUID | None = None  # keyset pagination: jobs older than this one
    limit: int = 50


async def list_jobs(q: Queue, f: JobFilter) -> list[Row]:
    """Newest first, keyset-paginated with `before`: the dashboard's selection, which holds the statement."""
    chosen = selection.Selection(
        org_id=f.org_id,
        app_version_id=f.app_version_id,
        group_id=f.group_id,
        target=f.target,
        statuses=() if f.status is None else (f.status,),
    )
    return await selection.list_jobs(q.db, chosen, f.before, f.limit)


async def cancel(q: Queue, job_id: uuid.UUID) -> Row:
    """A pending job is cancelled at once; a running one is marked cancelled, and its agent learns it
    from its next heartbeat and kills the test. Nothing the agent reports afterwards changes it."""
    async with q.db.transaction() as tx:
        row = await tx.first(P.cancel_jobs, {"job_ids": [job_id]})
        if row is None:
            current = await tx.first(P.get_job, {"job_id": job_id})
            if current is None:
                raise NotFound(f"no job {job_id}", job_id=str(job_id))
            raise Conflict(f"job {job_id} is already {current['status']}", status=current["status"])
        if await tx.value(P.group_status, {"group_id": row["group_id"]}) == "pending":
            await tx.execute(P.refresh_pending_group, {"group_id": row["group_id"]})
        await notify_jobs(tx, JobStatus.CANCELLED, [job_id])
        metrics.job_finished(row)
        return row


async def rerun(q: Queue, job_id: uuid.UUID) -> Row:
    """Re-queue a finished job with a fresh budget of attempts; its history is kept."""
    async with q.db.transaction() as tx:
        # Locked, so a concurrent prune (which skips locked rows) cannot delete it under the re-run.
        row = await tx.first(P.lock_jobs, {"job_ids": [job_id]})
        if row is None:
            raise NotFound(f"no job {job_id}", job_id=str(job_id))
        if await tx.first(P.rerun_jobs, {"job_ids": [job_id]}) is None:  # not in a final state
            raise Conflict(
                f"job {job_id} is {row['status']}: only a finished job can be re-queued", status=row["status"]
            )
        await requeue(tx, [job_id])
        await notify_jobs(tx, JobStatus.PENDING, [job_id])
        return await tx.one(P.get_job, {"job_id": job_id})
