"""What the queue looks like right now. Every query here reads pending and running rows only (through the
indexes on them), never the finished history, and aggregates in SQL: the cost follows the size of the
queue, not the number of jobs ever run. The finished history is the reporting views' business."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from qualgent.domain import Priority, Target, Tier
from qualgent.queue._common import OFFLINE_AFTER_LEASES

# Pending jobs of groups no agent holds yet: the queue proper.
_QUEUE_DEPTH = """
SELECT g.target, j.priority, g.tier, count(*) AS jobs,
       count(*) FILTER (WHERE j.run_after <= now()) AS ready
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending'
GROUP BY 1, 2, 3
"""

# One query per status so each reads its own partial index.
_GROUP_COUNTS = """
SELECT target, 'pending' AS status, count(*) AS groups FROM job_groups WHERE status = 'pending' GROUP BY target
UNION ALL
SELECT target, 'running', count(*) FROM job_groups WHERE status = 'running' GROUP BY target
"""

_RUNNING = "SELECT target, count(*) AS jobs FROM jobs WHERE status = 'running' GROUP BY target"

_OLDEST_WAIT = """
SELECT target, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS seconds
FROM jobs WHERE status = 'pending' AND run_after <= now()
GROUP BY target
"""

# An agent whose heartbeat is older than a lease is offline whatever its row says; deregistered ones are gone.
_AGENTS = """
SELECT t.target,
       CASE WHEN a.status <> 'offline' AND a.last_heartbeat_at < now() - make_interval(secs => :offline_after)
            THEN 'offline' ELSE a.status END AS status,
       count(*) AS agents
FROM agents a, unnest(a.targets) AS t(target)
WHERE a.deregistered_at IS NULL
GROUP BY 1, 2
"""

_AGENTS_BY_STATUS = """
SELECT CASE WHEN status <> 'offline' AND last_heartbeat_at < now() - make_interval(secs => :offline_after)
            THEN 'offline' ELSE status END AS status,
       count(*) AS agents
FROM agents
WHERE deregistered_at IS NULL
GROUP BY 1
"""

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


async def gauges(engine: AsyncEngine, lease_seconds: float) -> dict[str, Any]:
    """The queue's state for /metrics, /api/monitoring/metrics and the detailed health: six aggregate queries."""
    offline_after = lease_seconds * OFFLINE_AFTER_LEASES
    async with engine.connect() as conn:
        queue = await _rows(conn, _QUEUE_DEPTH)
        groups = await _rows(conn, _GROUP_COUNTS)
        running = await _rows(conn, _RUNNING)
        oldest = {r["target"]: r["seconds"] for r in await _rows(conn, _OLDEST_WAIT)}
        agents = await _rows(conn, _AGENTS, offline_after=offline_after)
        by_status = {
            r["status"]: r["agents"] for r in await _rows(conn, _AGENTS_BY_STATUS, offline_after=offline_after)
        }
    return {
        "queue": [{**r, "priority": _text(r["priority"]), "tier": _text(r["tier"])} for r in queue],
        "groups": groups,
        "running": running,
        "oldest_wait_seconds": oldest,
        "agents": agents,
        "agents_by_status": {status: by_status.get(status, 0) for status in ("idle", "busy", "offline")},
    }


class CachedGauges:
    """`gauges`, read at most once per `ttl` seconds however many scrapers ask: concurrent callers share
    one read. A failed read is None (the database is unreachable), and is not cached."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: dict[str, Any] | None = None
        self._taken = -math.inf
        self._lock = asyncio.Lock()

    async def get(self, engine: AsyncEngine, lease_seconds: float) -> dict[str, Any] | None:
        async with self._lock:
            if time.monotonic() - self._taken < self.ttl:
                return self._value
            try:
                self._value = await asyncio.wait_for(gauges(engine, lease_seconds), timeout=5)
            except Exception:
                return None
            self._taken = time.monotonic()
            return self._value


def totals(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a snapshot: queue depth, groups and agents, summed over targets and labels."""
    waits = snapshot["oldest_wait_seconds"].values()
    return {
        "pending": sum(r["jobs"] for r in snapshot["queue"]),
        "ready": sum(r["ready"] for r in snapshot["queue"]),
        "running": sum(r["jobs"] for r in snapshot["running"]),
        "groups": {
            status: sum(r["groups"] for r in snapshot["groups"] if r["status"] == status)
            for status in ("pending", "running")
        },
        "oldest_wait_seconds": max(waits) if waits else None,
        "agents_by_status": snapshot["agents_by_status"],
    }


async def queue_status(engine: AsyncEngine, group_limit: int = 100) -> dict[str, Any]:
    """What is waiting and what runs: pending jobs by priority, target, org and tier; the groups pending
    and running with their app versions and sizes (the first `group_limit` of each, in claim order)."""
    async with engine.connect() as conn:
        by: dict[str, dict[str, int]] = {}
        for name, column in (
            ("priority", "j.priority"),
            ("target", "j.target"),
            ("org", "j.org_id"),
            ("tier", "g.tier"),
        ):
            rows = await conn.execute(text(_PENDING_BY.format(column=column)))
            by[name] = {_text(r.key): r.n for r in rows}
        groups = {}
        for status in ("pending", "running"):
            rows = await conn.execute(text(_GROUPS), {"status": status, "limit": group_limit})
            groups[status] = [_group(dict(r)) for r in rows.mappings()]
        oldest = {r["target"]: r["seconds"] for r in await _rows(conn, _OLDEST_WAIT)}
        running = (await conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'running'"))).scalar_one()
    return {
        "pending": sum(by["priority"].values()),
        "running": running,
        "pending_by_priority": {p.value: by["priority"].get(p.value, 0) for p in Priority},
        "pending_by_target": {t.value: by["target"].get(t.value, 0) for t in Target},
        "pending_by_tier": {t.value: by["tier"].get(t.value, 0) for t in Tier},
        "pending_by_org": by["org"],
        "groups": groups,
        "oldest_wait_seconds": max(oldest.values()) if oldest else None,
        "oldest_wait_seconds_by_target": oldest,
    }


def _group(row: dict[str, Any]) -> dict[str, Any]:
    row["tier"] = _text(row["tier"])
    row["best_priority"] = _text(row["best_priority"])
    row["size"] = row["pending"] + row["running"]
    return row


async def scale_recommendations(engine: AsyncEngine, lease_seconds: float) -> list[dict[str, Any]]:
    """Per target: each waiting group wants one agent (a group runs on one agent); idle agents beyond
    the waiting groups, with nothing queued, can go. Advice, with the figures that justify it."""
    snapshot = await gauges(engine, lease_seconds)
    waiting: dict[str, dict[str, int]] = {}
    for row in snapshot["queue"]:
        entry = waiting.setdefault(row["target"], {"jobs": 0, "ready": 0})
        entry["jobs"] += row["jobs"]
        entry["ready"] += row["ready"]
    groups = {r["target"]: r["groups"] for r in snapshot["groups"] if r["status"] == "pending"}
    agents: dict[str, dict[str, int]] = {}
    for row in snapshot["agents"]:
        agents.setdefault(row["target"], {})[row["status"]] = row["agents"]
    advice = []
    for target in sorted(set(waiting) | set(groups) | set(agents)):
        pending_groups = groups.get(target, 0)
        idle = agents.get(target, {}).get("idle", 0)
        busy = agents.get(target, {}).get("busy", 0)
        add = max(0, pending_groups - idle)
        remove = max(0, idle - 1) if pending_groups == 0 else 0
        advice.append(
            {
                "target": target,
                "pending_groups": pending_groups,
                "pending_jobs": waiting.get(target, {}).get("jobs", 0),
                "ready_jobs": waiting.get(target, {}).get("ready", 0),
                "oldest_wait_seconds": snapshot["oldest_wait_seconds"].get(target),
                "idle_agents": idle,
                "busy_agents": busy,
                "offline_agents": agents.get(target, {}).get("offline", 0),
                "add_agents": add,
                "remove_agents": remove,
                "reason": _reason(pending_groups, idle, add, remove, snapshot["oldest_wait_seconds"].get(target)),
            }
        )
    return advice


def _reason(groups: int, idle: int, add: int, remove: int, oldest: float | None) -> str:
    if add:
        waited = f", the oldest job waiting {oldest:.0f}s" if oldest is not None else ""
        return f"{groups} group(s) waiting and {idle} idle agent(s){waited}: each group needs an agent"
    if remove:
        return f"nothing waiting and {idle} idle agent(s): one idle agent is enough headroom"
    return "capacity matches the queue"


async def database_health(engine: AsyncEngine, timeout: float = 5.0) -> dict[str, Any]:
    """Is PostgreSQL reachable, how fast does it answer, which schema revision is it at."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            latency_ms = (time.perf_counter() - started) * 1000
            revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except TimeoutError:
        return {"reachable": False, "error": f"no answer within {timeout:g}s"}
    except Exception as err:
        return {"reachable": False, "error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    return {"reachable": True, "latency_ms": math.floor(latency_ms * 100) / 100, "schema_revision": revision}


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))
