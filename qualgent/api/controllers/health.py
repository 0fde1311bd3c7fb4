from __future__ import annotations

from litestar import Controller, get

from qualgent import __version__
from qualgent.api.deps import ServicesDep
from qualgent.queue import stats


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("", summary="Liveness: the process answers (no database call)")
    async def health(self) -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @get("/detailed", summary="Database reachability and latency, schema revision, agents and queue")
    async def detailed(self, services: ServicesDep) -> dict[str, object]:
        database = await stats.database_health(services.engine)
        body: dict[str, object] = {"version": __version__, "database": database}
        if database["reachable"]:
            body.update(await stats.counts(services.engine, services.settings.lease_seconds))
        body["status"] = "ok" if database["reachable"] else "degraded"
        return body
