"""Capacity caps: how many groups may run at once on a target (a device farm's sessions) or for an org. The claim
enforces them (qualgent_claim, migration 0015); here they are set and shown."""

from __future__ import annotations

import msgspec

from qualgent.domain.types import Target
from qualgent.server.db.sql import FLEET
from qualgent.server.queue._common import OFFLINE_AFTER_LEASES
from qualgent.server.queue.core import Queue


class TargetCapacity(msgspec.Struct, frozen=True):
    target: str
    max_running: int | None  # groups running at once on it (None: no cap)
    running: int  # groups running now
    pending: int  # groups waiting
    agents_online: int


async def set_target_cap(q: Queue, target: Target, max_running: int | None) -> TargetCapacity:
    await q.db.execute(FLEET.set_target_cap, {"target": target.value, "max_running": max_running})
    (row,) = await list_targets(q, only=[target])
    return row


async def list_targets(q: Queue, only: list[Target] | None = None) -> list[TargetCapacity]:
    """Every target (or `only` these) with its cap, its running and pending groups, and its online agents."""
    wanted = [t.value for t in (only or list(Target))]
    params = {"targets": wanted, "offline_after": OFFLINE_AFTER_LEASES * q.lease_seconds}
    return await q.db.rows(FLEET.list_targets, params, row=TargetCapacity)
