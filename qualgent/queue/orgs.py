"""Orgs and their tiers. A tier change re-ranks the org's waiting groups at once."""

from __future__ import annotations

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.domain import NotFound, Tier


async def set_tier(engine: AsyncEngine, org_id: str, tier: Tier) -> RowMapping:
    async with engine.begin() as conn:
        row = (
            (
                await conn.execute(
                    text(
                        "INSERT INTO orgs (id, tier) VALUES (:org_id, CAST(:tier AS org_tier)) "
                        "ON CONFLICT (id) DO UPDATE SET tier = EXCLUDED.tier, updated_at = now() "
                        "RETURNING id, tier, created_at, updated_at"
                    ),
                    {"org_id": org_id, "tier": tier.value},
                )
            )
            .mappings()
            .one()
        )
        await conn.execute(
            text(
                "UPDATE job_groups SET tier = CAST(:tier AS org_tier) "
                "WHERE org_id = :org_id AND status = 'pending' AND tier <> CAST(:tier AS org_tier)"
            ),
            {"org_id": org_id, "tier": tier.value},
        )
        return row


async def get(engine: AsyncEngine, org_id: str) -> RowMapping:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT id, tier, created_at, updated_at FROM orgs WHERE id = :org_id"), {"org_id": org_id}
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
        rows = await conn.execute(text("SELECT id, tier, created_at, updated_at FROM orgs ORDER BY id"))
        return list(rows.mappings())
