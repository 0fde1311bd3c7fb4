"""What the queue looks like right now. Every query here reads pending and running rows only (through the
indexes on them), never the finished history, and aggregates in SQL: the cost follows the size of the
queue, not the number of jobs ever run. The finished history is the reporting views' business."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from psycopg import sql

from qualgent.domain import Priority, Target, Tier
from qualgent.server.db.database import Database, Tx
from qualgent.server.db.sql import DASHBOARD
from qualgent.server.queue._common import OFFLINE_AFTER_LEASES
from qualgent.server.queue.core import Queue

# What the pending jobs are counted by (DASHBOARD.pending_by's {column}).
_PENDING_BY = {"priority": ("j", "priority"), "target": ("j", "target"), "org": ("j", "org_id"), "tier": ("g", "tier")}


async def gauges(q: Queue) -> dict[str, Any]:
    """The queue's state for /metrics, /api/monitoring/metrics and the detailed health: six aggregate queries."""
    offline = {"offline_after": q.lease_seconds * OFFLINE_AFTER_LEASES}
    async with q.db.connection() as tx:
        queue = await tx.rows(DASHBOARD.queue_depth)
        groups = await tx.rows(DASHBOARD.group_counts)
        running = await tx.rows(DASHBOARD.running_by_target)
        oldest = await _oldest(tx)
        agents = await tx.rows(DASHBOARD.agents_by_target, offline)
        by_status = {r["status"]: r["agents"] for r in await tx.rows(DASHBOARD.agents_by_status, offline)}
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

    async def get(self, q: Queue) -> dict[str, Any] | None:
        async with self._lock:
            if time.monotonic() - self._taken < self.ttl:
                return self._value
            try:
                self._value = await asyncio.wait_for(gauges(q), timeout=5)
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


async def queue_status(db: Database, group_limit: int = 100) -> dict[str, Any]:
    """What is waiting and what runs: pending jobs by priority, target, org and tier; the groups pending
    and running with their app versions and sizes (the first `group_limit` of each, in claim order)."""
    async with db.connection() as tx:
        by: dict[str, dict[str, int]] = {}
        for name, column in _PENDING_BY.items():
            rows = await tx.rows(DASHBOARD.compose("pending_by", column=sql.Identifier(*column)))
            by[name] = {_text(r["key"]): r["n"] for r in rows}
        groups = {}
        for status in ("pending", "running"):
            rows = await tx.rows(DASHBOARD.groups_by_status, {"status": status, "limit": group_limit})
            groups[status] = [_group(r) for r in rows]
        oldest = await _oldest(tx)
        running = await tx.value(DASHBOARD.running_count)
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


async def _oldest(tx: Tx) -> dict[str, float]:
    return {r["target"]: r["seconds"] for r in await tx.rows(DASHBOARD.oldest_wait)}


def _group(row: dict[str, Any]) -> dict[str, Any]:
    row["tier"] = _text(row["tier"])
    row["best_priority"] = _text(row["best_priority"])
    row["size"] = row["pending"] + row["running"]
    return row


async def scale_recommendations(q: Queue) -> list[dict[str, Any]]:
    """Per target: each waiting group wants one agent (a group runs on one agent); idle agents beyond
    the waiting groups, with nothing queued, can go. Advice, with the figures that justify it."""
    snapshot = await gauges(q)
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


async def database_health(db: Database, timeout: float = 5.0) -> dict[str, Any]:
    """Is PostgreSQL reachable, how fast does it answer, which schema revision is it at."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), db.connection() as tx:
            await tx.value(DASHBOARD.ping)
            latency_ms = (time.perf_counter() - started) * 1000
            revision = await tx.value(DASHBOARD.schema_revision)
    except TimeoutError:
        return {"reachable": False, "error": f"no answer within {timeout:g}s"}
    except Exception as err:
        return {"reachable": False, "error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    return {"reachable": True, "latency_ms": math.floor(latency_ms * 100) / 100, "schema_revision": revision}


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))
