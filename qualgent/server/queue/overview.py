"""What the dashboard shows: the queue right now, the last hour, a group, and an org's days.

Like qualgent.server.queue.stats, the queue's figures read pending and running rows only (through their partial
indexes) and the last hour reads the finished-at index, so a page costs the size of the queue, not of the
history. Every read takes an optional org: a submitter's page is computed for its org alone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from qualgent.domain import NotFound
from qualgent.server.db.database import Database, Row
from qualgent.server.db.sql import DASHBOARD


async def queue(db: Database, org_id: str | None, group_limit: int = 50) -> dict[str, Any]:
    """The queue now: pending jobs by target and tier, the counts, the running groups with their progress."""
    org = {"org_id": org_id}
    async with db.connection() as tx:
        depth = await tx.rows(DASHBOARD.org_queue, org)
        counts = await tx.one(DASHBOARD.org_counts, org)
        groups = await tx.rows(DASHBOARD.running_groups, {**org, "limit": group_limit})
        hour = await tx.one(DASHBOARD.last_hour, org)
    decided = hour["completed"] + hour["failed"]
    hour["pass_rate"] = hour["completed"] / decided if decided else None
    return {"depth": depth, **counts, "running_groups": groups, "last_hour": hour}


async def group(db: Database, group_id: uuid.UUID, job_limit: int = 1000) -> dict[str, Any]:
    async with db.connection() as tx:
        found = await tx.first(DASHBOARD.group_page, {"group_id": group_id})
        if found is None:
            raise NotFound(f"no group {group_id}", group_id=str(group_id))
        jobs = await tx.rows(DASHBOARD.group_page_jobs, {"group_id": group_id, "limit": job_limit})
    return {**found, "jobs": jobs}


async def org_days(db: Database, org_id: str, days: int = 30) -> list[Row]:
    """Per UTC day of the last `days`: jobs decided (passed or failed), passed, failed, flaky, mean duration."""
    since = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
    return await db.rows(DASHBOARD.org_days, {"org_id": org_id, "since": since})
