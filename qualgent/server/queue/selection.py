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

from psycopg import sql

from qualgent.domain import FINAL_STATUSES, InvalidInput, JobStatus, Target
from qualgent.server.db.database import Database, Row, Tx
from qualgent.server.db.sql import DASHBOARD, P
from qualgent.server.observability import metrics
from qualgent.server.queue._common import notify_jobs, requeue

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

    def where(self) -> tuple[sql.Composable, dict[str, object]]:
        """The conditions (the named fragments of db/dashboard.sql, ANDed) and their parameters."""
        params: dict[str, object] = {}
        for column in ("org_id", "app_version_id", "group_id"):
            value = getattr(self, column)
            if value is not None:
                params[column] = value
        if self.target is not None:
            params["target"] = self.target.value
        if self.statuses:
            params["statuses"] = [s.value for s in self.statuses]
        if self.test_path:
            params["test_path"] = "%" + _escape_like(self.test_path) + "%"
        clauses = [sql.SQL(getattr(DASHBOARD, f"where_{name}")) for name in params]
        return (sql.SQL(" AND ").join(clauses) if clauses else sql.SQL(DASHBOARD.where_true)), params


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_jobs(db: Database, selection: Selection, before: uuid.UUID | None = None, limit: int = 50) -> list[Row]:
    """Newest first, keyset-paginated with `before` (a job id: the jobs older than it)."""
    where, params = selection.where()
    if before is not None:
        where = sql.SQL(" AND ").join([where, sql.SQL(DASHBOARD.before_job)])
        params["before"] = before
    params["limit"] = limit
    return await db.rows(DASHBOARD.compose("select_jobs", where=where), params)


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


async def cancel(db: Database, selection: Selection) -> BulkResult:
    """Cancel every pending or running job the selection names, as `jobs.cancel` does one: pending ones at once,
    running ones marked so that their agent kills the test at its next heartbeat. The rows are locked in id order
    first, so two bulk actions cannot deadlock; `cancel_jobs` is the one cancel, for one job or many."""
    where, params = _statuses(selection, CANCELLABLE, CANCELLABLE, "cancel").where()
    async with db.transaction() as tx:
        ids: list[uuid.UUID] = await tx.values(DASHBOARD.compose("lock_selected", where=where), params)
        rows = await tx.rows(P.cancel_jobs, {"job_ids": ids}) if ids else []
        await _refresh_pending_groups(tx, {row["group_id"] for row in rows})
        await notify_jobs(tx, JobStatus.CANCELLED, [row["id"] for row in rows])
    for row in rows:
        metrics.job_finished(row)
    return BulkResult([row["id"] for row in rows])


async def _refresh_pending_groups(tx: Tx, group_ids: set[uuid.UUID]) -> None:
    if not group_ids:
        return
    for group_id in await tx.values(DASHBOARD.pending_groups_among, {"ids": sorted(group_ids)}):
        await tx.execute(P.refresh_pending_group, {"group_id": group_id})


async def retry(db: Database, selection: Selection) -> BulkResult:
    """Re-queue every finished job the selection names (failed and cancelled unless statuses say otherwise)
    with a fresh budget of attempts, as `jobs.rerun` does one (`rerun_jobs`, the one re-run); their history is
    kept."""
    final = sorted(FINAL_STATUSES, key=lambda s: s.value)
    where, params = _statuses(selection, final, RETRIED_BY_DEFAULT, "retry").where()
    async with db.transaction() as tx:
        locked: list[uuid.UUID] = await tx.values(DASHBOARD.compose("lock_selected", where=where), params)
        ids: list[uuid.UUID] = await tx.values(P.rerun_jobs, {"job_ids": locked}) if locked else []
        if ids:
            await requeue(tx, ids)
            await notify_jobs(tx, JobStatus.PENDING, ids)
    return BulkResult(ids)
