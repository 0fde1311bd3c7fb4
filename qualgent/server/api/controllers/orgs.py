from __future__ import annotations

import msgspec
from litestar import Controller, get, put
from litestar.params import JSONBody

from qualgent.domain import InvalidInput, NotFound
from qualgent.server.api.auth import PrincipalDep
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import IdentifierPath, OrgIn, OrgOut, org_out
from qualgent.server.queue import orgs


class OrgController(Controller):
    path = "/orgs"
    tags = ["orgs"]

    @put(
        "/{org_id:str}",
        summary="Set an org's tier (premium > enterprise > standard) and/or its cap on groups running at once",
    )
    async def set_tier(self, services: ServicesDep, org_id: IdentifierPath, data: JSONBody[OrgIn]) -> OrgOut:
        tier = None if isinstance(data.tier, msgspec.UnsetType) else data.tier
        set_cap = not isinstance(data.max_running, msgspec.UnsetType)
        if tier is None and not set_cap:
            raise InvalidInput("give tier, max_running or both", field="tier")
        cap = data.max_running if not isinstance(data.max_running, msgspec.UnsetType) else None
        return org_out(await orgs.set_tier(services.db, org_id, tier, cap, set_cap))

    @get("")
    async def list_orgs(self, services: ServicesDep) -> list[OrgOut]:
        return [org_out(r) for r in await orgs.list_orgs(services.db)]

    @get("/{org_id:str}")
    async def get_org(self, services: ServicesDep, principal: PrincipalDep, org_id: IdentifierPath) -> OrgOut:
        if not principal.sees(org_id):
            raise NotFound(f"no org {org_id}", org_id=org_id)
        return org_out(await orgs.get(services.db, org_id))
