"""Capacity caps: how many groups may run at once on a target (a device farm's sessions) or for an org. The claim
enforces them (qualgent_claim, migration 0015); here they are set and shown."""

from __future__ import annotations

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.domain.types import Target
from qualgent.queue._common import OFFLINE_AFTER_LEASES

_TARGETS = """
SELECT t.target, c.max_running,
       (SELECT count(*) FROM job_groups g WHERE g.status = 'running' AND g.target = t.target)::int AS running,
       (SELECT count(*) FROM job_groups g WHERE g.status = 'pending' AND g.target = t.target)::int AS pending,
       (SELECT count(*) FROM agents a
        WHERE t.target = ANY(a.targets) AND a.status <> 'offline'
          AND a.last_heartbeat_at >= now() - make_interval(secs => :offline_after))::int AS agents_online
FROM unnest(CAST(:targets AS text[])) WITH ORDINALITY AS t (target, n)
LEFT JOIN targets c ON c.target = t.target
ORDER BY t.n
"""


async def set_target_cap(engine: AsyncEngine, target: Target, max_running: int | None) -> RowMapping:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO targets (target, max_running) VALUES (:target, :max_running) "
                "ON CONFLICT (target) DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now()"
            ),
            {"target": target.value, "max_running": max_running},
        )
    (row,) = await list_targets(engine, lease_seconds=1.0, only=[target])
    return row


async def list_targets(engine: AsyncEngine, lease_seconds: float, only: list[Target] | None = None) -> list[RowMapping]:
    """Every target (or `only` these) with its cap, its running and pending groups, and its online agents."""
    wanted = [t.value for t in (only or list(Target))]
    async with engine.connect() as conn:
        params = {"targets": wanted, "offline_after": OFFLINE_AFTER_LEASES * lease_seconds}
        return list((await conn.execute(text(_TARGETS), params)).mappings())
