"""Orgs, their tiers and their caps on running groups. A tier change re-ranks the org's waiting groups at once."""

from __future__ import annotations

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.domain import NotFound, Tier

_UPSERT = """
INSERT INTO orgs (id, tier, max_running)
VALUES (:org_id, COALESCE(CAST(:tier AS org_tier), 'standard'), :max_running)
ON CONFLICT (id) DO UPDATE SET
    tier = COALESCE(CAST(:tier AS org_tier), orgs.tier),
    max_running = CASE WHEN :set_cap THEN EXCLUDED.max_running ELSE orgs.max_running END,
    updated_at = now()
RETURNING id, tier, max_running, created_at, updated_at
"""


async def set_tier(
    engine: AsyncEngine, org_id: str, tier: Tier | None, max_running: int | None = None, set_cap: bool = False
) -> RowMapping:
    """Set an org's tier and/or its cap on running groups (`set_cap`: `max_running` is given, None for no cap);
    an org not known yet is made. The pending groups are re-ranked first, the org's row written last: a claim
    holds a group's lock when it writes the org's row (fair share), so the other order could deadlock with it."""
    async with engine.begin() as conn:
        if tier is not None:
            await conn.execute(
                text(
                    "UPDATE job_groups SET tier = CAST(:tier AS org_tier) "
                    "WHERE org_id = :org_id AND status = 'pending' AND tier <> CAST(:tier AS org_tier)"
                ),
                {"org_id": org_id, "tier": tier.value},
            )
        params = {
            "org_id": org_id,
            "tier": None if tier is None else tier.value,
            "max_running": max_running,
            "set_cap": set_cap,
        }
        return (await conn.execute(text(_UPSERT), params)).mappings().one()


async def get(engine: AsyncEngine, org_id: str) -> RowMapping:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT id, tier, max_running, created_at, updated_at FROM orgs WHERE id = :org_id"),
                    {"org_id": org_id},
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no org {org_id}", org_id=org_id)
    return row


async def list_orgs(engine: AsyncEngine) -> list[RowMapping]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, tier, max_running, created_at, updated_at FROM orgs ORDER BY id"))
        return list(rows.mappings())
