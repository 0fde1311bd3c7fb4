"""What the dashboard shows: the queue right now, the last hour, a group, and an org's days.

Like qualgent.queue.stats, the queue's figures read pending and running rows only (through their partial
indexes) and the last hour reads the finished-at index, so a page costs the size of the queue, not of the
history. Every read takes an optional org: a submitter's page is computed for its org alone.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualgent.domain import NotFound

_QUEUE = """
SELECT g.target, g.tier::text AS tier, count(*) AS jobs, count(*) FILTER (WHERE j.run_after <= now()) AS ready
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending' AND (CAST(:org_id AS text) IS NULL OR j.org_id = :org_id)
GROUP BY 1, 2 ORDER BY 1, 2
"""

_COUNTS = """
SELECT (SELECT count(*) FROM jobs
        WHERE status = 'pending' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS pending,
       (SELECT count(*) FROM jobs
        WHERE status = 'running' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS running,
       (SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM jobs
        WHERE status = 'pending' AND run_after <= now()
          AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS oldest_wait_seconds
"""

_RUNNING_GROUPS = """
SELECT g.id, g.org_id, g.app_version_id, g.target, g.agent_id, a.name AS agent_name, g.claimed_at,
       (SELECT count(*) FROM jobs j WHERE j.group_id = g.id) AS total,
       (SELECT count(*) FROM jobs j
        WHERE j.group_id = g.id AND j.status IN ('completed', 'failed', 'cancelled')) AS done,
       (SELECT count(*) FROM jobs j WHERE j.group_id = g.id AND j.status = 'failed') AS failed
FROM job_groups g LEFT JOIN agents a ON a.id = g.agent_id
WHERE g.status = 'running' AND (CAST(:org_id AS text) IS NULL OR g.org_id = :org_id)
ORDER BY g.claimed_at
LIMIT :limit
"""

_LAST_HOUR = """
SELECT count(*) AS finished,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE duration_ms IS NOT NULL) AS median_ms
FROM jobs
WHERE finished_at >= now() - interval '1 hour' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)
"""

_GROUP = """
SELECT g.id, g.org_id, g.app_version_id, g.target, g.status, g.tier::text AS tier, g.best_priority::text
       AS best_priority, g.agent_id, a.name AS agent_name, g.oldest_job_at, g.claimed_at, g.lease_expires_at,
       g.finished_at
FROM job_groups g LEFT JOIN agents a ON a.id = g.agent_id
WHERE g.id = :group_id
"""

_GROUP_JOBS = """
SELECT id, org_id, test_path, status, attempts, max_attempts, duration_ms, flaky, error, started_at, finished_at
FROM jobs WHERE group_id = :group_id
ORDER BY started_at NULLS LAST, created_at, id
LIMIT :limit
"""

# An org's days, from the live jobs and, for the days retention has pruned, from its daily rollups.
_DAYS = """
WITH live AS (
    SELECT (finished_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE status IN ('completed', 'failed')) AS decided,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE flaky) AS flaky,
           avg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL) / 1000.0 AS mean_seconds
    FROM jobs
    WHERE org_id = :org_id AND finished_at >= :since AND status IN ('completed', 'failed', 'cancelled')
    GROUP BY 1
), pruned AS (
    SELECT day, sum(completed + failed) AS decided, sum(completed) AS completed, sum(failed) AS failed,
           sum(flaky) AS flaky, sum(duration_seconds) / NULLIF(sum(durations), 0) AS mean_seconds
    FROM reporting.daily_job_stats
    WHERE org_id = :org_id AND day >= CAST(:since AS date)
    GROUP BY 1
)
SELECT day, sum(decided)::bigint AS decided, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       sum(flaky)::bigint AS flaky,
       sum(mean_seconds * decided) / NULLIF(sum(decided) FILTER (WHERE mean_seconds IS NOT NULL), 0) AS mean_seconds
FROM (SELECT * FROM live UNION ALL SELECT * FROM pruned) d
GROUP BY day ORDER BY day
"""


async def queue(engine: AsyncEngine, org_id: str | None, group_limit: int = 50) -> dict[str, Any]:
    """The queue now: pending jobs by target and tier, the counts, the running groups with their progress."""
    params = {"org_id": org_id, "limit": group_limit}
    async with engine.connect() as conn:
        depth = await _rows(conn, _QUEUE, params)
        counts = (await _rows(conn, _COUNTS, params))[0]
        groups = await _rows(conn, _RUNNING_GROUPS, params)
        hour = (await _rows(conn, _LAST_HOUR, params))[0]
    decided = hour["completed"] + hour["failed"]
    hour["pass_rate"] = hour["completed"] / decided if decided else None
    return {"depth": depth, **counts, "running_groups": groups, "last_hour": hour}


async def group(engine: AsyncEngine, group_id: uuid.UUID, job_limit: int = 1000) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = await _rows(conn, _GROUP, {"group_id": group_id})
        if not found:
            raise NotFound(f"no group {group_id}", group_id=str(group_id))
        jobs = await _rows(conn, _GROUP_JOBS, {"group_id": group_id, "limit": job_limit})
    return {**found[0], "jobs": jobs}


async def org_days(engine: AsyncEngine, org_id: str, days: int = 30) -> list[dict[str, Any]]:
    """Per UTC day of the last `days`: jobs decided (passed or failed), passed, failed, flaky, mean duration."""
    since = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
    async with engine.connect() as conn:
        return await _rows(conn, _DAYS, {"org_id": org_id, "since": since})


async def _rows(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
