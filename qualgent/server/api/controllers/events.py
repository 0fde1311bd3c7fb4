from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.exceptions import HTTPException
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent

from qualgent.server.api import streams
from qualgent.server.api.auth import PrincipalDep
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import IdentifierQuery


class EventController(Controller):
    path = "/events"
    tags = ["jobs"]

    @get(
        "",
        summary="Server-Sent Events of job status changes",
        description="One `job` event per status change; `resync` when changes may have been missed (re-read). "
        "Filter by `job_id` (repeatable) and `org_id`. With a job filter the stream starts with their current state. "
        "A token holds at most QUALGENT_MAX_STREAMS_PER_TOKEN streams (429 past it); revoking it ends them with a "
        "`closed` event.",
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        principal: PrincipalDep,
        job_id: Annotated[list[uuid.UUID] | None, QueryParameter(max_items=1000)] = None,
        org_id: IdentifierQuery = None,
    ) -> ServerSentEvent:
        filters = streams.EventFilter(frozenset(job_id or ()), principal.org_filter(org_id))
        token_id = uuid.UUID(principal.token_id) if principal.token_id else None
        key = f"token:{token_id}" if token_id else f"address:{request.client.host if request.client else 'unknown'}"
        cap = services.settings.max_streams_per_token
        if services.hub.streams_of(key) >= cap:
            raise HTTPException(
                status_code=429,
                detail=f"too many event streams: at most {cap} per token (QUALGENT_MAX_STREAMS_PER_TOKEN)",
                headers={"Retry-After": "5"},
            )
        owner = streams.StreamOwner(key, cap, token_id, services.db)
        return ServerSentEvent(streams.stream(services.queue, services.hub, filters, owner))
