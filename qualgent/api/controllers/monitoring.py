from __future__ import annotations

from litestar import Controller, get

from qualgent.api.deps import ServicesDep
from qualgent.queue import stats


class MonitoringController(Controller):
    path = "/monitoring"
    tags = ["monitoring"]

    @get("/metrics", summary="Jobs by status, agents by status and target, queue depth (JSON)")
    async def metrics(self, services: ServicesDep) -> dict[str, object]:
        return await stats.counts(services.engine, services.settings.lease_seconds)

    @get("/scale-recommendations", summary="Per target: agents to add or remove, and why")
    async def scale(self, services: ServicesDep) -> list[dict[str, object]]:
        return await stats.scale_recommendations(services.engine, services.settings.lease_seconds)
