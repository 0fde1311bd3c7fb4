"""Serving the app with uvicorn, draining long-polls first on shutdown."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import uvicorn
from litestar import Litestar

from qualgent.server.api.connections import ConnectionGuard, protocol_class
from qualgent.server.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 30


class Server(uvicorn.Server):
    """uvicorn waits for in-flight requests before it shuts the app down. Long-polls and waiting claims
    would hold it for their whole timeout, so they are told to answer first."""

    def __init__(self, config: uvicorn.Config, capture_signals: bool = True) -> None:
        super().__init__(config)
        self._capture = capture_signals

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return super().capture_signals() if self._capture else contextlib.nullcontext()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets is not None and self.started:  # uvicorn says where it serves only for the sockets it bound
            self._log_started_message(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app: Any = self.config.app
        services = getattr(getattr(app, "state", None), "services", None) if isinstance(app, Litestar) else None
        if services is not None:
            services.hub.close_waiters()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> list[socket.socket]:
    """The server's listening sockets, bound before anything else starts (an embedded PostgreSQL, migrations): a
    port in use is then a message at once, where uvicorn finds it only after the app's start-up and must shut that
    down again. One per address `host` resolves to, as asyncio's create_server binds them (a name like localhost
    can be IPv4 and IPv6). OSError as the socket module raises it."""
    sockets: list[socket.socket] = []
    try:
        seen = set()
        for family, kind, proto, _name, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop gets its port
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # its IPv4 twin is bound on its own
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def config(
    app: Litestar, host: str, port: int, log_level: str = "info", settings: Settings | None = None
) -> uvicorn.Config:
    """uvicorn's settings, with the connection bounds of `settings` (their defaults when None)."""
    limits = settings or Settings()
    guard = ConnectionGuard(limits.header_timeout_seconds, limits.max_connections_per_address)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(guard),
        log_level=log_level,
        lifespan="on",
        access_log=False,
        log_config=None,  # qualgent.logs formats uvicorn's records like ours (text or JSON)
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
