from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.datastructures import State

from qualgent.server.api.controllers.health import listen_state
from qualgent.server.api.deps import ServicesDep
from qualgent.server.observability import metrics
from qualgent.server.queue import stats


class MonitoringController(Controller):
    path = "/monitoring"
    tags = ["monitoring"]

    @get("/metrics", summary="What /metrics says, in JSON: the queue's state, this process's counters")
    async def metrics(self, services: ServicesDep, state: State) -> dict[str, Any]:
        snapshot = await _gauges(state).get(services.queue)
        return {
            "database_up": snapshot is not None,
            "state": snapshot,
            "totals": stats.totals(snapshot) if snapshot is not None else None,
            "listen": listen_state(services.hub),
            "process": metrics.as_json(),
            "state_cached_seconds": metrics.SNAPSHOT_TTL,
        }

    @get("/scale-recommendations", summary="Per target: agents to add or remove, and the figures behind it")
    async def scale(self, services: ServicesDep) -> list[dict[str, object]]:
        return await stats.scale_recommendations(services.queue)


# Litestar adds "; charset=utf-8" to a text/* media type itself: given it twice, it sent it twice.
_EXPOSITION = metrics.CONTENT_TYPE.removesuffix("; charset=utf-8")


@get("/metrics", summary="Prometheus metrics (text exposition format)", tags=["monitoring"], media_type=_EXPOSITION)
async def prometheus_metrics(services: ServicesDep, state: State) -> Response[bytes]:
    snapshot = await _gauges(state).get(services.queue)
    body = metrics.exposition(snapshot, listen_state(services.hub))
    return Response(body, media_type=_EXPOSITION)


def _gauges(state: State) -> stats.CachedGauges:
    """One cache per app: every scrape within SNAPSHOT_TTL shares one read of the database."""
    cache: stats.CachedGauges | None = state.get("qualgent_gauges")
    if cache is None:
        cache = state["qualgent_gauges"] = stats.CachedGauges(metrics.SNAPSHOT_TTL)
    return cache
