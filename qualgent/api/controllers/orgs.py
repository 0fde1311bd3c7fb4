from __future__ import annotations

from litestar import Controller, get, put
from litestar.params import JSONBody

from qualgent.api.auth import PrincipalDep
from qualgent.api.deps import ServicesDep
from qualgent.api.schemas import IdentifierPath, OrgIn, OrgOut, org_out
from qualgent.domain import NotFound
from qualgent.queue import orgs


class OrgController(Controller):
    path = "/orgs"
    tags = ["orgs"]

    @put("/{org_id:str}", summary="Set an org's tier (premium > enterprise > standard)")
    async def set_tier(self, services: ServicesDep, org_id: IdentifierPath, data: JSONBody[OrgIn]) -> OrgOut:
        return org_out(await orgs.set_tier(services.engine, org_id, data.tier))

    @get("")
    async def list_orgs(self, services: ServicesDep) -> list[OrgOut]:
        return [org_out(r) for r in await orgs.list_orgs(services.engine)]

    @get("/{org_id:str}")
    async def get_org(self, services: ServicesDep, principal: PrincipalDep, org_id: IdentifierPath) -> OrgOut:
        if not principal.sees(org_id):
            raise NotFound(f"no org {org_id}", org_id=org_id)
        return org_out(await orgs.get(services.engine, org_id))
