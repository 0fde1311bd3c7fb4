"""Orgs, their tiers and their caps on running groups. A tier change re-ranks the org's waiting groups at once."""

from __future__ import annotations

import datetime as dt

import msgspec

from qualgent.domain import NotFound, Tier
from qualgent.server.db.database import Database
from qualgent.server.db.sql import FLEET


class Org(msgspec.Struct, frozen=True):
    id: str
    tier: str
    max_running: int | None  # groups of the org running at once (None: no cap)
    created_at: dt.datetime
    updated_at: dt.datetime


async def set_tier(
    db: Database, org_id: str, tier: Tier | None, max_running: int | None = None, set_cap: bool = False
) -> Org:
    """Set an org's tier and/or its cap on running groups (`set_cap`: `max_running` is given, None for no cap);
    an org not known yet is made. The pending groups are re-ranked first, the org's row written last: a claim
    holds a group's lock when it writes the org's row (fair share), so the other order could deadlock with it."""
    async with db.transaction() as tx:
        if tier is not None:
            await tx.execute(FLEET.retier_pending_groups, {"org_id": org_id, "tier": tier.value})
        params = {
            "org_id": org_id,
            "tier": None if tier is None else tier.value,
            "max_running": max_running,
            "set_cap": set_cap,
        }
        return await tx.one(FLEET.upsert_org, params, row=Org)


async def get(db: Database, org_id: str) -> Org:
    row = await db.first(FLEET.org, {"org_id": org_id}, row=Org)
    if row is None:
        raise NotFound(f"no org {org_id}", org_id=org_id)
    return row


async def list_orgs(db: Database) -> list[Org]:
    return await db.rows(FLEET.list_orgs, None, row=Org)
