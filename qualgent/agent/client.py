"""The agent's HTTP client (httpx, async): retries with backoff while the server or database is away,
and turns 409 into StaleClaim/Conflict so the loop can drop a lost group.

Requests go straight to httpx's connection pool (`AsyncHTTPTransport`), not through `AsyncClient`: the agent sends
a few kinds of JSON request to one server, and the client's layers it does not use (URL merging, auth flows,
redirects, a cookie jar filled from every answer) are a large part of an agent's CPU per request
(docs/performance.md).
What the client did that the agent needs is done here: the base URL, the bearer token, timeouts, and a proxy from
the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY), as httpx reads it."""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.request
from typing import Any

import httpx
import msgspec

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 30.0  # connect, read, write and pool: a claim's long-poll (20 s) must fit
_TIMEOUTS = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), TIMEOUT_SECONDS)}


class ServerConflict(Exception):
    """The server refused a write with 409: the claim is stale, or the job was cancelled."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", "conflict"))
        self.body = body

    @property
    def stale_claim(self) -> bool:
        return self.body.get("error") == "StaleClaim"


class ServerRejected(Exception):
    """The server refused a request as invalid (4xx other than 409): retrying will not help."""


class AgentClient:
    def __init__(self, api_url: str, token: str | None, max_backoff: float = 10.0) -> None:
        self._base = api_url.rstrip("/")
        auth = [("Authorization", f"Bearer {token}")] if token else []
        self._plain = auth
        self._json = [*auth, ("Content-Type", "application/json")]  # bodies encoded by msgspec, in C
        self._http = httpx.AsyncHTTPTransport(proxy=_proxy_for(httpx.URL(self._base)))
        self.max_backoff = max_backoff

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        if body is None:
            request = httpx.Request(method, self._base + path, headers=self._plain, extensions=_TIMEOUTS)
        else:
            content = msgspec.json.encode(body)
            request = httpx.Request(
                method, self._base + path, headers=self._json, content=content, extensions=_TIMEOUTS
            )
        response = await self._http.handle_async_request(request)
        try:
            await response.aread()  # the whole body; the connection goes back to the pool
        except BaseException:  # cancelled (a stop abandons a claim's long-poll) or cut off: never leak it
            await response.aclose()
            raise
        return response

    async def call(self, method: str, path: str, body: Any = None, retry_for: float | None = None) -> Any:
        """Send, retrying transport errors and 5xx with jittered backoff (for `retry_for` seconds at
        most; None: until it works)."""
        loop = asyncio.get_running_loop()
        deadline = None if retry_for is None else loop.time() + retry_for
        delay = 0.2
        while True:
            pause = None
            try:
                response = await self._send(method, path, body)
                if response.status_code == 429:  # rate limited: wait as long as the server asks
                    pause = _retry_after(response)
                elif response.status_code < 500:
                    return self._decode(response)
                problem = f"server answered {response.status_code}"
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}"
            wait = delay * random.uniform(0.5, 1.5) if pause is None else pause
            if deadline is not None and loop.time() + wait > deadline:
                raise ConnectionError(f"{method} {path} failed: {problem}")
            log.warning("%s %s failed (%s); retrying in %.1fs", method, path, problem, wait)
            await asyncio.sleep(wait)
            delay = min(self.max_backoff, delay * 2)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code == 204:
            return None
        body = msgspec.json.decode(response.content) if response.content else None
        if response.status_code == 409:
            raise ServerConflict(body or {})
        if response.is_error:
            detail = body.get("detail") if isinstance(body, dict) else response.text
            raise ServerRejected(f"{response.status_code}: {detail}")
        return body


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(60.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for the server's URL, or None: what httpx's AsyncClient would use."""
    if urllib.request.proxy_bypass_environment(url.host):  # type: ignore[attr-defined]  # (not in typeshed)
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(url.scheme) or proxies.get("all")
