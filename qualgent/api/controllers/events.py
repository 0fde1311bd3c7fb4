from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent

from qualgent.api.auth import PrincipalDep
from qualgent.api.deps import ServicesDep
from qualgent.api.schemas import IdentifierQuery
from qualgent.notify import events


class EventController(Controller):
    path = "/events"
    tags = ["jobs"]

    @get(
        "",
        summary="Server-Sent Events of job status changes",
        description="One `job` event per status change; `resync` when changes may have been missed (re-read). "
        "Filter by `job_id` (repeatable) and `org_id`. With a job filter the stream starts with their current state.",
    )
    async def stream(
        self,
        services: ServicesDep,
        principal: PrincipalDep,
        job_id: Annotated[list[uuid.UUID] | None, QueryParameter(max_items=1000)] = None,
        org_id: IdentifierQuery = None,
    ) -> ServerSentEvent:
        filters = events.EventFilter(frozenset(job_id or ()), principal.org_filter(org_id))
        return ServerSentEvent(events.stream(services.engine, services.hub, filters))
