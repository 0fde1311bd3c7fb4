"""Connections a server holds: a deadline for each request head, a bound per client address, the open-files limit.

uvicorn has no timeout for receiving a request (its keep-alive timeout covers only the idle time between requests,
and is reset by every byte), and ASGI middleware runs only once a request is parsed: a client that sends
`GET /api/jobs HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more holds a socket, a file descriptor and a parser for ever,
and ten thousand such clients starve everyone. So the HTTP protocol itself is wrapped (as Go's ReadHeaderTimeout and
nginx's client_header_timeout do it, the server's own way):

- a connection whose request head (request line and headers) has not arrived `head_timeout` seconds after its
  first byte, or after it opened, is answered 408 and closed; the clock is re-armed for each request of a
  keep-alive connection and disarmed once the head is in (a long body upload or a long-poll is not cut);
- a client address holding `per_address` connections already gets its next one answered 429 and closed at once,
  before anything is read from it (0: no bound; behind a proxy every client has the proxy's address, see
  deploy/README.md);
- both are logged: the first cut at once, then one warning line per address and reason every few seconds with how
  many were cut, never a line per connection (a flood must not become a flood of log lines).

`raise_open_files_limit` lifts RLIMIT_NOFILE's soft limit to the hard one at start: Linux's default soft limit,
1,024, is a handful of clients' worth of sockets.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("qualgent.server")

LOG_EVERY_SECONDS = 5.0

_TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s"
)
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def _answer(template: bytes, detail: str, status: int) -> bytes:
    body = b'{"status_code":%d,"detail":"%s"}' % (status, detail.encode())
    return template % (len(body), body)


TOO_MANY_CONNECTIONS = _answer(_TOO_MANY, "too many connections from this address", 429)
HEAD_TIMED_OUT = _answer(_TIMEOUT, "the request head did not arrive in time", 408)


@dataclass
class ConnectionGuard:
    """The bounds of one server process, shared by all its connections (one event loop: no locks)."""

    head_timeout: float = 10.0
    per_address: int = 4096  # 0: no bound
    open: Counter[str] = field(default_factory=Counter)
    _cuts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _flush: asyncio.TimerHandle | None = None

    def admit(self, address: str) -> bool:
        if self.per_address and self.open[address] >= self.per_address:
            self.cut(address, f"over {self.per_address} connections from one address (429)")
            return False
        self.open[address] += 1
        return True

    def leave(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]

    def cut(self, address: str, reason: str) -> None:
        """Log a cut at once when none was logged lately; count it for the next line otherwise."""
        self._cuts[(address, reason)] += 1
        if self._flush is None:
            self.log_cuts()
            self._flush = asyncio.get_running_loop().call_later(LOG_EVERY_SECONDS, self._next_lines)

    def _next_lines(self) -> None:
        self._flush = None
        if self._cuts:
            self.log_cuts()
            self._flush = asyncio.get_running_loop().call_later(LOG_EVERY_SECONDS, self._next_lines)

    def log_cuts(self) -> None:
        cuts, self._cuts = self._cuts, Counter()
        for (address, reason), count in sorted(cuts.items()):
            log.warning("cut %d connection(s) from %s: %s", count, address, reason)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's two bounds. A subclass per server binds its guard
    (`protocol_class`)."""

    guard: ClassVar[ConnectionGuard]
    _address: str | None = None
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else "unknown"
        if not self.guard.admit(address):
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._address = address
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self.guard.leave(self._address)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is None:  # refused: nothing it sends is read
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.guard.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a pipelined head behind a request in flight: its clock runs once the request is answered
            return
        self.guard.cut(self._address or "unknown", f"no request head within {self.guard.head_timeout:g} s (408)")
        self.transport.write(HEAD_TIMED_OUT)
        self.transport.close()


def protocol_class(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's `http` setting: the guarded protocol bound to this server's guard."""
    bound: dict[str, Any] = {"guard": guard}
    return type("GuardedProtocol", (GuardedProtocol,), bound)


def raise_open_files_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, err)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard
