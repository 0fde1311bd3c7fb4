"""Agents as the queue sees them: registration, listing, status, deregistration."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.db.sql import Q
from qualgent.domain import NotFound
from qualgent.domain.types import AgentStatus
from qualgent.queue import claims
from qualgent.queue._common import OFFLINE_AFTER_LEASES
from qualgent.queue.core import Queue

_SELECT = """
SELECT a.id, a.name, a.targets, a.registered_at, a.last_heartbeat_at, a.deregistered_at,
       CASE WHEN a.status <> 'offline'
                 AND a.last_heartbeat_at < now() - make_interval(secs => :offline_after)
            THEN 'offline' ELSE a.status END AS status,
       (SELECT g.id FROM job_groups g WHERE g.agent_id = a.id AND g.status = 'running'
        ORDER BY g.claimed_at DESC LIMIT 1) AS group_id
FROM agents a
"""


async def targets(
    engine: AsyncEngine, agent_id: uuid.UUID, lease_seconds: float, known: dict[uuid.UUID, list[str]]
) -> list[str]:
    """The targets an agent serves: fixed at registration, so read once per process and kept in `known` (a
    claim needs them before it waits, and must not pay a transaction for them each time)."""
    if (cached := known.get(agent_id)) is not None:
        return cached
    agent = await get(engine, agent_id, lease_seconds)  # NotFound if there is none
    if len(known) >= 10_000:  # agents come and go: forget them all now and then
        known.clear()
    known[agent_id] = list(agent["targets"])
    return known[agent_id]


async def targets_without_online_agent(engine: AsyncEngine, wanted: set[str], lease_seconds: float) -> list[str]:
    """Of the targets `wanted`, those that no online agent serves (none registered, or all of them offline,
    deregistered or silent for a lease), sorted."""
    if not wanted:
        return []
    query = text(
        "SELECT DISTINCT t.target FROM agents a, unnest(a.targets) AS t(target) "
        "WHERE a.deregistered_at IS NULL AND a.status <> 'offline' "
        "AND a.last_heartbeat_at >= now() - make_interval(secs => :offline_after) "
        "AND t.target = ANY(CAST(:wanted AS text[]))"
    )
    params = {"wanted": sorted(wanted), "offline_after": lease_seconds * OFFLINE_AFTER_LEASES}
    async with engine.connect() as conn:
        served = {row.target for row in await conn.execute(query, params)}
    return sorted(wanted - served)


async def register(engine: AsyncEngine, name: str, targets: list[str]) -> RowMapping:
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text("INSERT INTO agents (name, targets) VALUES (:name, :targets) RETURNING id"),
                {"name": name, "targets": sorted(set(targets))},
            )
        ).one()
    return await get(engine, row.id, lease_seconds=1.0)


async def get(engine: AsyncEngine, agent_id: uuid.UUID, lease_seconds: float) -> RowMapping:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text(_SELECT + " WHERE a.id = :agent_id"),
                    {"agent_id": agent_id, "offline_after": lease_seconds * OFFLINE_AFTER_LEASES},
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return row


async def list_agents(
    engine: AsyncEngine,
    lease_seconds: float,
    status: AgentStatus | None = None,
    limit: int = 500,
    include_deregistered: bool = False,
) -> list[RowMapping]:
    """Agents, newest first. Those that deregistered are history, left out unless asked for."""
    query = f"SELECT * FROM ({_SELECT}) s WHERE true"  # noqa: S608 - constant text
    params: dict[str, Any] = {"offline_after": lease_seconds * OFFLINE_AFTER_LEASES, "limit": limit}
    if not include_deregistered:
        query += " AND s.deregistered_at IS NULL"
    if status is not None:
        query += " AND s.status = :status"
        params["status"] = status.value
    query += " ORDER BY s.registered_at DESC LIMIT :limit"
    async with engine.connect() as conn:
        return list((await conn.execute(text(query), params)).mappings())


async def set_status(engine: AsyncEngine, agent_id: uuid.UUID, status: AgentStatus, lease_seconds: float) -> RowMapping:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("UPDATE agents SET status = :status, last_heartbeat_at = now() WHERE id = :agent_id RETURNING id"),
            {"status": status.value, "agent_id": agent_id},
        )
        if result.first() is None:
            raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return await get(engine, agent_id, lease_seconds)


async def deregister(engine: AsyncEngine, agent_id: uuid.UUID, lease_seconds: float, q: Queue) -> RowMapping:
    """The agent leaves: whatever it holds goes back to the queue, and it is kept, offline and marked
    deregistered, for history (the live views leave it out)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text("UPDATE agents SET status = 'offline', deregistered_at = now() WHERE id = :agent_id RETURNING id"),
            {"agent_id": agent_id},
        )
        if result.first() is None:
            raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
        held = await conn.execute(
            text("SELECT id, lease_token FROM job_groups WHERE agent_id = :agent_id AND status = 'running'"),
            {"agent_id": agent_id},
        )
        held_claims = list(held)
    for group in held_claims:
        await claims.release(q, agent_id, group.id, group.lease_token, "agent deregistered")
    await _set_offline(engine, agent_id)
    return await get(engine, agent_id, lease_seconds)


async def _set_offline(engine: AsyncEngine, agent_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await conn.execute(Q.set_agent_status, {"agent_id": agent_id, "status": AgentStatus.OFFLINE.value})
