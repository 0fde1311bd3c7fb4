"""Agents as the queue sees them: registration, listing, status, deregistration."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from qualgent.domain import NotFound
from qualgent.domain.types import AgentStatus
from qualgent.server.db.sql import FLEET
from qualgent.server.queue import claims
from qualgent.server.queue._common import OFFLINE_AFTER_LEASES
from qualgent.server.queue.core import Queue


class Agent(msgspec.Struct, frozen=True):
    """An agent as the API and the dashboard show it: `status` is offline for one silent for a lease, whatever
    its row says; `group_id` the group it runs now, if any."""

    id: uuid.UUID
    name: str
    targets: list[str]
    registered_at: dt.datetime
    last_heartbeat_at: dt.datetime
    deregistered_at: dt.datetime | None
    status: str
    group_id: uuid.UUID | None


def _offline_after(q: Queue) -> float:
    return q.lease_seconds * OFFLINE_AFTER_LEASES


class _Held(msgspec.Struct, frozen=True):
    id: uuid.UUID
    lease_token: uuid.UUID


async def targets(q: Queue, agent_id: uuid.UUID, known: dict[uuid.UUID, list[str]]) -> list[str]:
    """The targets an agent serves: fixed at registration, so read once per process and kept in `known` (a
    claim needs them before it waits, and must not pay a transaction for them each time)."""
    if (cached := known.get(agent_id)) is not None:
        return cached
    agent = await get(q, agent_id)  # NotFound if there is none
    if len(known) >= 10_000:  # agents come and go: forget them all now and then
        known.clear()
    known[agent_id] = list(agent.targets)
    return known[agent_id]


async def targets_without_online_agent(q: Queue, wanted: set[str]) -> list[str]:
    """Of the targets `wanted`, those that no online agent serves (none registered, or all of them offline,
    deregistered or silent for a lease), sorted."""
    if not wanted:
        return []
    params = {"wanted": sorted(wanted), "offline_after": _offline_after(q)}
    served = set(await q.db.values(FLEET.served_targets, params))
    return sorted(wanted - served)


async def register(q: Queue, name: str, targets: list[str]) -> Agent:
    agent_id = await q.db.value(FLEET.register_agent, {"name": name, "targets": sorted(set(targets))})
    return await get(q, agent_id)


async def get(q: Queue, agent_id: uuid.UUID) -> Agent:
    row = await q.db.first(FLEET.agent, {"agent_id": agent_id, "offline_after": _offline_after(q)}, row=Agent)
    if row is None:
        raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return row


async def list_agents(
    q: Queue, status: AgentStatus | None = None, limit: int = 500, include_deregistered: bool = False
) -> list[Agent]:
    """Agents, newest first. Those that deregistered are history, left out unless asked for."""
    params: dict[str, Any] = {
        "offline_after": _offline_after(q),
        "limit": limit,
        "include_deregistered": include_deregistered,
        "status": None if status is None else status.value,
    }
    return await q.db.rows(FLEET.list_agents, params, row=Agent)


async def set_status(q: Queue, agent_id: uuid.UUID, status: AgentStatus) -> Agent:
    if await q.db.first(FLEET.set_agent_status_now, {"status": status.value, "agent_id": agent_id}) is None:
        raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return await get(q, agent_id)


async def deregister(q: Queue, agent_id: uuid.UUID) -> Agent:
    """The agent leaves: whatever it holds goes back to the queue, and it is kept, offline and marked
    deregistered, for history (the live views leave it out)."""
    async with q.db.transaction() as tx:
        if await tx.first(FLEET.deregister_agent, {"agent_id": agent_id}) is None:
            raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
        held = await tx.rows(FLEET.held_groups, {"agent_id": agent_id}, row=_Held)
    for group in held:
        await claims.release(q, agent_id, group.id, group.lease_token, "agent deregistered")
    await q.db.execute(FLEET.set_agent_offline, {"agent_id": agent_id})
    return await get(q, agent_id)
