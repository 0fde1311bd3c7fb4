"""What the queue looks like right now: bounded aggregate queries, never one query per job."""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.domain import Priority, Target
from qualgent.queue.agents import OFFLINE_AFTER_LEASES

_PENDING_BY = """
SELECT {column} AS key, count(*) AS n
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending'
GROUP BY 1 ORDER BY 1
"""

_GROUPS = """
SELECT g.id, g.org_id, g.app_version_id, g.target, g.status, g.tier, g.best_priority, g.agent_id,
       g.oldest_job_at, g.claimed_at, g.lease_expires_at,
       count(j.id) FILTER (WHERE j.status = 'pending') AS pending,
       count(j.id) FILTER (WHERE j.status = 'running') AS running
FROM job_groups g LEFT JOIN jobs j ON j.group_id = g.id AND j.status IN ('pending', 'running')
WHERE g.status = :status
GROUP BY g.id
ORDER BY g.tier, g.best_priority, g.oldest_job_at
LIMIT :limit
"""


async def queue_status(engine: AsyncEngine, group_limit: int = 100) -> dict[str, Any]:
    async with engine.connect() as conn:
        by: dict[str, dict[str, int]] = {}
        for name, column in (("priority", "j.priority"), ("target", "j.target"), ("org", "j.org_id")):
            rows = await conn.execute(text(_PENDING_BY.format(column=column)))
            by[name] = {str(getattr(r.key, "value", r.key)): r.n for r in rows}
        groups = {}
        for status in ("pending", "running"):
            rows = await conn.execute(text(_GROUPS), {"status": status, "limit": group_limit})
            groups[status] = [dict(r) for r in rows.mappings()]
        oldest = (
            await conn.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM jobs "
                    "WHERE status = 'pending' AND run_after <= now()"
                )
            )
        ).scalar_one()
        running = (await conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'running'"))).scalar_one()
    return {
        "pending": sum(by["priority"].values()),
        "running": running,
        "pending_by_priority": {p.value: by["priority"].get(p.value, 0) for p in Priority},
        "pending_by_target": {t.value: by["target"].get(t.value, 0) for t in Target},
        "pending_by_org": by["org"],
        "groups": groups,
        "oldest_wait_seconds": float(oldest) if oldest is not None else None,
    }


async def counts(engine: AsyncEngine, lease_seconds: float) -> dict[str, Any]:
    """Jobs by status, agents by status and target, per target queue depth: the JSON metrics."""
    offline_after = lease_seconds * OFFLINE_AFTER_LEASES
    async with engine.connect() as conn:
        jobs = {
            r.status: r.n for r in await conn.execute(text("SELECT status, count(*) AS n FROM jobs GROUP BY status"))
        }
        agents = [
            dict(r)
            for r in (
                await conn.execute(
                    text(
                        "SELECT t.target, "
                        "CASE WHEN a.status <> 'offline' AND a.last_heartbeat_at < now() - make_interval(secs => :o) "
                        "THEN 'offline' ELSE a.status END AS status, count(*) AS n "
                        "FROM agents a, unnest(a.targets) AS t(target) GROUP BY 1, 2"
                    ),
                    {"o": offline_after},
                )
            ).mappings()
        ]
        targets = [
            dict(r)
            for r in (
                await conn.execute(
                    text(
                        "SELECT g.target, count(DISTINCT g.id) AS groups, count(j.id) AS jobs, "
                        "EXTRACT(EPOCH FROM now() - min(j.created_at)) AS oldest_wait_seconds "
                        "FROM job_groups g JOIN jobs j ON j.group_id = g.id AND j.status = 'pending' "
                        "WHERE g.status = 'pending' GROUP BY g.target"
                    )
                )
            ).mappings()
        ]
    return {"jobs_by_status": jobs, "agents": agents, "pending_by_target": targets}


async def scale_recommendations(engine: AsyncEngine, lease_seconds: float) -> list[dict[str, Any]]:
    """Per target: each waiting group wants one agent (a group runs on one agent); idle agents beyond
    the waiting groups, with nothing queued, can go. Advice, with the figures that justify it."""
    data = await counts(engine, lease_seconds)
    waiting = {t["target"]: t for t in data["pending_by_target"]}
    agents: dict[str, dict[str, int]] = {}
    for row in data["agents"]:
        agents.setdefault(row["target"], {})[row["status"]] = row["n"]
    advice = []
    for target in sorted(set(waiting) | set(agents)):
        queue = waiting.get(target, {})
        groups = int(queue.get("groups", 0))
        idle = agents.get(target, {}).get("idle", 0)
        busy = agents.get(target, {}).get("busy", 0)
        add = max(0, groups - idle)
        remove = max(0, idle - 1) if groups == 0 else 0
        oldest = queue.get("oldest_wait_seconds")
        advice.append(
            {
                "target": target,
                "pending_groups": groups,
                "pending_jobs": int(queue.get("jobs", 0)),
                "oldest_wait_seconds": float(oldest) if oldest is not None else None,
                "idle_agents": idle,
                "busy_agents": busy,
                "add_agents": add,
                "remove_agents": remove,
                "reason": _reason(groups, idle, add, remove),
            }
        )
    return advice


def _reason(groups: int, idle: int, add: int, remove: int) -> str:
    if add:
        return f"{groups} group(s) waiting and {idle} idle agent(s): each group needs an agent"
    if remove:
        return f"nothing waiting and {idle} idle agent(s): one idle agent is enough headroom"
    return "capacity matches the queue"


async def database_health(engine: AsyncEngine) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except Exception as err:
        return {"reachable": False, "error": str(err).splitlines()[0]}
    latency_ms = (time.perf_counter() - started) * 1000
    return {"reachable": True, "latency_ms": math.floor(latency_ms * 100) / 100, "schema_revision": revision}
