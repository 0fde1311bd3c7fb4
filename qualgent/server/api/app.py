"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from qualgent import __version__
from qualgent.aio import cancel_and_wait
from qualgent.server import web
from qualgent.server.api import auth
from qualgent.server.api.controllers.agents import AgentController
from qualgent.server.api.controllers.appwright import AppwrightController
from qualgent.server.api.controllers.bulk import BulkJobController
from qualgent.server.api.controllers.events import EventController
from qualgent.server.api.controllers.health import HealthController
from qualgent.server.api.controllers.jobs import JobController
from qualgent.server.api.controllers.monitoring import MonitoringController, prometheus_metrics
from qualgent.server.api.controllers.orgs import OrgController
from qualgent.server.api.controllers.reports import ReportController
from qualgent.server.api.controllers.targets import TargetController
from qualgent.server.api.controllers.tokens import TokenController
from qualgent.server.api.deps import Services, provide_services
from qualgent.server.api.docs import redoc_bundle, redoc_plugin
from qualgent.server.api.errors import EXCEPTION_HANDLERS, document_error_responses
from qualgent.server.api.schemas import strict_json_body
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.notify import Hub
from qualgent.server.observability import metrics
from qualgent.server.queue import claims, history, retention, tokens
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings

log = logging.getLogger(__name__)

POOL_SIZE = 30
"""The server's connections, one pool for every statement: enough for the agents' claims and reports, the API's
reads and the background loops at once; a request that finds none free within POOL_TIMEOUT_SECONDS gets a 503."""


def create_app(settings: Settings) -> Litestar:
    """Build the app. The database's pool is made at start-up and closed at shutdown; nothing connects at
    import or here."""
    if settings.database_url is None:
        raise ValueError("create_app needs settings.database_url (the server resolves the embedded one first)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        url = libpq_url(settings.database_url or "")
        hub = Hub(url)
        await hub.start()
        db = Database(url, size=POOL_SIZE)
        await db.open()
        queue = Queue(db, settings)
        app.state.services = Services(queue=queue, hub=hub, tokens=tokens.TokenCache(hub))
        rescuer = asyncio.create_task(_rescue_loop(queue), name="qualgent-rescue")
        pruner = asyncio.create_task(retention.prune_loop(db, settings.retention_days), name="qualgent-prune")
        try:
            yield
        finally:
            for task in (rescuer, pruner):
                await cancel_and_wait(task)  # a plain cancel can be lost while the loop waits for a connection
            await hub.stop()
            await history.recorded()  # the last groups' history, before the pool it writes through closes
            await db.close()

    api = Router(
        path="/api",
        route_handlers=[
            JobController,
            BulkJobController,
            EventController,
            AgentController,
            AppwrightController,
            OrgController,
            TargetController,
            HealthController,
            MonitoringController,
            ReportController,
            TokenController,
        ],
    )
    app = Litestar(
        route_handlers=[api, prometheus_metrics, redoc_bundle, web.router()],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "principal": Provide(auth.provide_principal, sync_to_thread=False),
        },
        middleware=[auth.middleware(settings)],
        before_request=strict_json_body,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="qualgent",
            version=__version__,
            description="Queue, group and dispatch mobile end-to-end tests to test agents.",
            path="/api/schema",
            render_plugins=[redoc_plugin()],
        ),
        request_max_body_size=8 * 1024 * 1024,
        logging_config=None,
        debug=False,
    )
    document_error_responses(app)
    return app


async def _rescue_loop(queue: Queue) -> None:
    """Hand back claims whose lease lapsed. Every server runs this; SKIP LOCKED makes it safe."""
    interval = max(0.5, min(5.0, queue.lease_seconds / 3))
    while True:
        try:
            rescued = await claims.rescue_lapsed(queue)
            metrics.leases_rescued(rescued)
            if rescued:
                log.warning("rescued %d claim(s) whose lease lapsed", rescued)
        except Exception:
            log.warning("lease rescue failed; retrying", exc_info=True)
        await asyncio.sleep(interval)
