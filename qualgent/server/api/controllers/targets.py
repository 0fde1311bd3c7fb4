from __future__ import annotations

import msgspec
from litestar import Controller, get, put
from litestar.params import FromPath, JSONBody

from qualgent.domain.types import Target
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import TargetIn, TargetOut
from qualgent.server.queue import capacity


class TargetController(Controller):
    path = "/targets"
    tags = ["targets"]

    @put("/{target:str}", summary="Cap the groups running at once on a target (null: no cap)")
    async def set_cap(self, services: ServicesDep, target: FromPath[Target], data: JSONBody[TargetIn]) -> TargetOut:
        row = await capacity.set_target_cap(services.queue, target, data.max_running)
        return msgspec.convert(row, TargetOut, from_attributes=True)

    @get("", summary="Targets with their caps, running and pending groups, and online agents")
    async def list_targets(self, services: ServicesDep) -> list[TargetOut]:
        rows = await capacity.list_targets(services.queue)
        return [msgspec.convert(r, TargetOut, from_attributes=True) for r in rows]
