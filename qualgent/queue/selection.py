"""Jobs chosen by a filter: listed for the dashboard, or cancelled or re-queued all at once.

A bulk action is decided by the server from the filter, in one transaction, with one notification for all
the jobs it changed: a page or a script never cancels a build 200 jobs at a time (River UI's issues 54 and
590 are its users asking for this). The filter is the one the jobs page shows, so what a button does is
what the page lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualgent.db.database import Tx
from qualgent.db.raw import Raw
from qualgent.db.sql import Q
from qualgent.domain import FINAL_STATUSES, InvalidInput, JobStatus, Target
from qualgent.observability import metrics
from qualgent.queue._common import notify_jobs, requeue

CANCELLABLE = (JobStatus.PENDING, JobStatus.RUNNING)
RETRIED_BY_DEFAULT = (JobStatus.FAILED, JobStatus.CANCELLED)  # a passed job is re-run only when asked by status


@dataclass(frozen=True, slots=True)
class Selection:
    """Which jobs: every given field must match. `test_path` matches any part of the path, case-insensitively."""

    org_id: str | None = None
    app_version_id: str | None = None
    group_id: uuid.UUID | None = None
    target: Target | None = None
    statuses: tuple[JobStatus, ...] = field(default=())
    test_path: str | None = None

    @property
    def narrowed(self) -> bool:
        """Whether it names an org, a build or a group: a bulk action must, so that no filter left empty by
        mistake cancels the whole queue."""
        return any(v is not None for v in (self.org_id, self.app_version_id, self.group_id))

    def where(self) -> tuple[str, dict[str, object]]:
        clauses: list[str] = []
        params: dict[str, object] = {}
        for column in ("org_id", "app_version_id", "group_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if self.target is not None:
            clauses.append("target = :target")
            params["target"] = self.target.value
        if self.statuses:
            clauses.append("status = ANY(CAST(:statuses AS text[]))")
            params["statuses"] = [s.value for s in self.statuses]
        if self.test_path:
            clauses.append("test_path ILIKE :test_path ESCAPE '\\'")
            params["test_path"] = "%" + _escape_like(self.test_path) + "%"
        return (" AND ".join(clauses) or "TRUE"), params


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_jobs(
    engine: AsyncEngine, selection: Selection, before: uuid.UUID | None = None, limit: int = 50
) -> list[RowMapping]:
    """Newest first, keyset-paginated with `before` (a job id: the jobs older than it)."""
    where, params = selection.where()
    if before is not None:
        where += " AND (created_at, id) < (SELECT created_at, id FROM jobs WHERE id = :before)"
        params["before"] = before
    params["limit"] = limit
    query = text(f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit")  # noqa: S608 - fixed column names
    async with engine.connect() as conn:
        return list((await conn.execute(query, params)).mappings())


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk action changed: the jobs' ids (in no particular order)."""

    job_ids: list[uuid.UUID]


def _statuses(selection: Selection, allowed: Sequence[JobStatus], default: Sequence[JobStatus], verb: str) -> Selection:
    if not selection.narrowed:
        raise InvalidInput(f"say which jobs to {verb}: give org_id, app_version_id or group_id", field="org_id")
    wrong = [s.value for s in selection.statuses if s not in allowed]
    if wrong:
        raise InvalidInput(
            f"only {', '.join(s.value for s in allowed)} jobs can be {verb}ed, not {', '.join(wrong)}", field="status"
        )
    return selection if selection.statuses else _with_statuses(selection, tuple(default))


def _with_statuses(selection: Selection, statuses: tuple[JobStatus, ...]) -> Selection:
    return Selection(
        selection.org_id, selection.app_version_id, selection.group_id, selection.target, statuses, selection.test_path
    )


async def cancel(engine: AsyncEngine, selection: Selection) -> BulkResult:
    """Cancel every pending or running job the selection names, as `jobs.cancel` does one: pending ones at once,
    running ones marked so that their agent kills the test at its next heartbeat."""
    where, params = _statuses(selection, CANCELLABLE, CANCELLABLE, "cancel").where()
    lock = text(
        f"SELECT id FROM jobs WHERE {where} AND status IN ('pending', 'running') ORDER BY id FOR NO KEY UPDATE"  # noqa: S608 - fixed text
    )
    async with engine.begin() as conn:
        ids = list((await conn.execute(lock, params)).scalars())
        rows = list((await conn.execute(Q.cancel_jobs, {"job_ids": ids})).mappings()) if ids else []
        await _refresh_pending_groups(conn, {row["group_id"] for row in rows})
        await notify_jobs(await _tx(conn), JobStatus.CANCELLED, [row["id"] for row in rows])
    for row in rows:
        metrics.job_finished(row)
    return BulkResult([row["id"] for row in rows])


async def _refresh_pending_groups(conn: AsyncConnection, group_ids: set[uuid.UUID]) -> None:
    if not group_ids:
        return
    pending = await conn.execute(
        text("SELECT id FROM job_groups WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' ORDER BY id"),
        {"ids": sorted(group_ids)},
    )
    for group_id in pending.scalars():
        await conn.execute(Q.refresh_pending_group, {"group_id": group_id})


async def retry(engine: AsyncEngine, selection: Selection) -> BulkResult:
    """Re-queue every finished job the selection names (failed and cancelled unless statuses say otherwise)
    with a fresh budget of attempts, as `jobs.rerun` does one; their history is kept."""
    final = sorted(FINAL_STATUSES, key=lambda s: s.value)
    where, params = _statuses(selection, final, RETRIED_BY_DEFAULT, "retry").where()
    lock = text(f"SELECT id FROM jobs WHERE {where} ORDER BY id FOR NO KEY UPDATE")  # noqa: S608 - fixed text
    async with engine.begin() as conn:
        ids = list((await conn.execute(lock, params)).scalars())
        if ids:
            await conn.execute(Q.rerun_jobs, {"job_ids": ids})
            await requeue(await _tx(conn), ids)
            await notify_jobs(await _tx(conn), JobStatus.PENDING, ids)
    return BulkResult(ids)


async def _tx(conn: AsyncConnection) -> Tx:
    """The transaction's own psycopg connection, for the queue's shared operations (qualgent.queue._common)."""
    return Tx((await Raw.of(conn)).connection)
