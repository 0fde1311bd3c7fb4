from __future__ import annotations

import functools
from typing import Any

from litestar import Controller, Response, get

from qualgent import __version__
from qualgent.server.api.deps import ServicesDep
from qualgent.server.db import migrate
from qualgent.server.notify import Hub
from qualgent.server.queue import stats


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("", summary="Liveness: the process answers (no database call)")
    async def health(self) -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @get(
        "/detailed",
        summary="Readiness: database reachable (503 if not), its latency and schema revision, the LISTEN "
        "connection, agents by status, queue depth",
    )
    async def detailed(self, services: ServicesDep) -> Response[dict[str, Any]]:
        database = await stats.database_health(services.db)
        database["expected_schema_revision"] = _head_revision()
        listen = listen_state(services.hub)
        body: dict[str, Any] = {"version": __version__, "database": database, "listen": listen}
        if database["reachable"]:
            snapshot = await stats.gauges(services.queue)
            totals = stats.totals(snapshot)
            body["agents"] = totals.pop("agents_by_status")
            body["queue"] = totals
        healthy = database["reachable"] and database["schema_revision"] == database["expected_schema_revision"]
        body["status"] = "ok" if healthy and listen["connected"] else "degraded"
        return Response(body, status_code=200 if database["reachable"] else 503)


def listen_state(hub: Hub) -> dict[str, Any]:
    """This process's LISTEN connection: when it is down, waiting falls back to polling (slower, not stuck)."""
    return {
        "connected": hub.connected,
        "reconnects": hub.reconnects,
        "notifications_delivered": hub.delivered,
        "waiters": hub.waiters,
        "job_waiters": hub.job_waiters,
    }


@functools.cache
def _head_revision() -> str | None:
    return migrate.head_revision()
