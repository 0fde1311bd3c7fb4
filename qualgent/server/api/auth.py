"""Who is calling, and may they: authentication, the route policy, org scoping and rate limits.

One middleware runs in front of every route handler (docs/security.md):

1. The route's policy, from POLICY by method and path template: open to anyone, or the roles allowed.
   A route missing from POLICY is for the admin only, so a new route is closed until someone decides.
2. Without QUALGENT_ADMIN_TOKEN authentication is off and every caller acts as the admin (the server
   then binds loopback only, see `bind_refusal`). With it, `Authorization: Bearer <token>` must carry
   the admin token or a live token from `POST /api/tokens`: missing or unknown is 401, a role the route
   does not allow is 403.
3. The caller's token bucket: per token, and per address for calls without a valid token. An empty
   bucket is 429 with Retry-After.
4. The principal goes on the request's state. Controllers take it as `principal: PrincipalDep` and
   scope what they read and change with it (`org_filter`, `require_org`, `sees`): a
   submitter sees its own org's jobs only, and another org's job is 404, as if it did not exist.

Tokens are never logged: nothing here logs a header, and errors say which rule refused, never what
was sent.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from qualgent.domain.roles import Role
from qualgent.server.api import sessions
from qualgent.server.queue import tokens
from qualgent.server.settings import Settings

Roles = frozenset[Role]
OPEN: Roles | None = None
"""A route anyone may call, with or without a token."""

_ADMIN: Roles = frozenset({Role.ADMIN})
_SUBMITTERS: Roles = frozenset({Role.ADMIN, Role.SUBMITTER})
_AGENTS: Roles = frozenset({Role.ADMIN, Role.AGENT})
_ANYONE_KNOWN: Roles = frozenset(Role)

POLICY: dict[tuple[str, str], Roles | None] = {
    ("GET", "/api/health"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/api/health/detailed"): _ANYONE_KNOWN,
    # A submitter's jobs: the controllers keep it to its own org.
    ("POST", "/api/jobs"): _SUBMITTERS,
    ("GET", "/api/jobs"): _SUBMITTERS,
    ("GET", "/api/jobs/{job_id}"): _SUBMITTERS,
    ("GET", "/api/jobs/{job_id}/wait"): _SUBMITTERS,
    ("POST", "/api/jobs/wait"): _SUBMITTERS,
    ("PUT", "/api/jobs/{job_id}/status"): _SUBMITTERS,
    ("DELETE", "/api/jobs/{job_id}"): _SUBMITTERS,
    ("POST", "/api/jobs/cancel"): _SUBMITTERS,
    ("POST", "/api/jobs/retry"): _SUBMITTERS,
    ("GET", "/api/events"): _SUBMITTERS,
    ("GET", "/api/orgs/{org_id}"): _SUBMITTERS,
    # Agent work.
    ("POST", "/api/agents"): _AGENTS,
    ("GET", "/api/agents/{agent_id}"): _AGENTS,
    ("PUT", "/api/agents/{agent_id}/heartbeat"): _AGENTS,
    ("PUT", "/api/agents/{agent_id}/status"): _AGENTS,
    ("DELETE", "/api/agents/{agent_id}"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/claim"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/jobs/{job_id}/start"): _AGENTS,
    ("GET", "/api/agents/{agent_id}/jobs/{job_id}/wait"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/jobs/{job_id}/result"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/groups/{group_id}/release"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/groups/{group_id}/progress"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/jobs/wait"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/browserstack-apps/upload-lease"): _AGENTS,
    ("PUT", "/api/agents/{agent_id}/browserstack-apps"): _AGENTS,
    ("POST", "/api/agents/{agent_id}/browserstack-apps/gone"): _AGENTS,
    # Everything else (the whole queue, every org, agents listed, tiers, tokens, monitoring) is the
    # admin's; written out where a reader might expect otherwise.
    ("GET", "/api/jobs/queue/status"): _ADMIN,
    ("GET", "/api/agents"): _ADMIN,
    ("GET", "/api/orgs"): _ADMIN,
    ("PUT", "/api/orgs/{org_id}"): _ADMIN,
    ("GET", "/api/targets"): _ADMIN,
    ("PUT", "/api/targets/{target}"): _ADMIN,
    ("POST", "/api/tokens"): _ADMIN,
    ("GET", "/api/tokens"): _ADMIN,
    ("DELETE", "/api/tokens/{token_id}"): _ADMIN,
    ("GET", "/api/monitoring/metrics"): _ADMIN,
    ("GET", "/api/monitoring/scale-recommendations"): _ADMIN,
    ("GET", "/api/reports/{name}"): _ADMIN,
}

_OPEN_PREFIXES = ("/api/schema",)  # the OpenAPI document and its viewers

SESSION_ROUTES = frozenset({("GET", "/api/events")})
"""API routes that also take the dashboard's session cookie (a browser's EventSource sends no header);
read-only, so a cookie cannot be used to change anything outside the dashboard's CSRF-checked forms."""

DASHBOARD_OPT = "dashboard"
"""Route handlers with this opt set are dashboard pages (qualgent.server.web): they take the session cookie only."""


def _is_dashboard(scope: HTTPScope) -> bool:
    handler = scope.get("route_handler")
    return bool(handler is not None and handler.opt.get(DASHBOARD_OPT))


def policy(method: str, path_template: str) -> Roles | None:
    """The roles allowed to call a route (None: open to anyone). Unlisted routes are the admin's."""
    if method in ("OPTIONS", "HEAD") or path_template.startswith(_OPEN_PREFIXES):
        return OPEN
    return POLICY.get((method, path_template), _ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as the controllers see it."""

    role: Role
    org_id: str | None = None
    token_id: str | None = None  # None: the admin token from the environment

    def org_filter(self, requested: str | None) -> str | None:
        """The org a listing may show: what was asked for, and for a submitter, only its own org."""
        if self.role is not Role.SUBMITTER:
            return requested
        if requested is not None and requested != self.org_id:
            raise PermissionDeniedException(detail=f"this token acts for org {self.org_id!r} only", extra=_org_field())
        return self.org_id

    def require_org(self, org_id: str, field: str = "org_id") -> None:
        """Refuse (403) acting for an org other than the submitter's own, naming the field."""
        if self.role is Role.SUBMITTER and org_id != self.org_id:
            raise PermissionDeniedException(
                detail=f"this token acts for org {self.org_id!r} only", extra=_org_field(field)
            )

    def sees(self, org_id: str) -> bool:
        """Whether this caller may see an org's objects. Answer an unseen one exactly as a missing one
        (the same 404), so that a submitter cannot even learn that another org's job exists."""
        return self.role is not Role.SUBMITTER or org_id == self.org_id


def _org_field(field: str = "org_id") -> list[dict[str, str]]:
    return [{"key": field, "message": "outside this token's org"}]


ADMIN = Principal(Role.ADMIN)

PrincipalDep = NamedDependency[Principal]
"""How a handler asks for the caller: `principal: PrincipalDep`."""


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.state.principal
    return principal


class RateLimiter:
    """Token buckets in this process's memory, one per key: `rate` requests a second sustained, `burst`
    at once. Each server process counts on its own, so N servers behind a balancer allow N times the
    rate. O(1) per request; idle buckets are dropped when there are too many keys."""

    def __init__(
        self, rate: float, burst: int, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)

    def _level(self, key: str, now: float) -> float:
        tokens_left, stamp = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens_left + (now - stamp) * self.rate)

    def take(self, key: str) -> float:
        """Spend one request: 0 when allowed, else the seconds until one is allowed."""
        now = self.clock()
        level = self._level(key, now)
        if level < 1:
            self._buckets[key] = (level, now)
            return (1 - level) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._drop_idle(now)
        self._buckets[key] = (level - 1, now)
        return 0.0

    def wait_needed(self, key: str) -> float:
        """What `take` would answer, without spending anything."""
        now = self.clock()
        level = self._level(key, now)
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def _drop_idle(self, now: float) -> None:
        full = [key for key in self._buckets if self._level(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # a flood of distinct keys: forget rather than grow
            self._buckets.clear()


def too_many_requests(wait: float) -> HTTPException:
    seconds = max(1, math.ceil(wait))
    return HTTPException(
        status_code=429,
        detail=f"rate limit exceeded: retry in {seconds}s",
        headers={"Retry-After": str(seconds)},
    )


class Gate:
    """The decisions of the middleware, apart from ASGI: who the caller is and whether it may go on."""

    def __init__(self, settings: Settings) -> None:
        self.admin_token = settings.admin_token
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit > 0 else None

    @property
    def enforcing(self) -> bool:
        return self.admin_token is not None

    async def admit(self, scope: HTTPScope, services: Any) -> Principal | None:
        template = scope.get("path_template", scope["path"])
        allowed = policy(scope["method"], template)
        address = _client_address(scope)
        if _is_dashboard(scope):  # its pages decide themselves (a login form, not a 401): see qualgent.server.web
            self._spend(f"address:{address}", address)
            return await self._session(scope, services) if self.enforcing else ADMIN
        if allowed is None or not self.enforcing:
            self._spend(f"address:{address}", address)
            return ADMIN if not self.enforcing else None
        secret = _bearer(scope)
        principal = None
        if secret is None and (scope["method"], template) in SESSION_ROUTES:
            principal = await self._session(scope, services)
        if principal is None:
            principal = await self._authenticate(secret, address, services)
        key = f"token:{principal.token_id or 'admin'}"
        self._spend(f"{key}@{address}" if principal.role is Role.AGENT else key, None)
        if principal.role not in allowed:
            raise PermissionDeniedException(
                detail=f"a {principal.role.value} token may not call {scope['method']} {scope['path']}"
            )
        return principal

    async def _authenticate(self, secret: str | None, address: str, services: Any) -> Principal:
        address_key = f"address:{address}"
        # An address that has been sending bad or missing tokens waits before anything is looked up.
        if self.limiter is not None and not _is_loopback(address) and (wait := self.limiter.wait_needed(address_key)):
            raise too_many_requests(wait)
        principal = await self._principal(secret, services) if secret else None
        if principal is None:
            self._spend(address_key, address)
            reason = "missing bearer token" if secret is None else "unknown or revoked token"
            raise NotAuthorizedException(detail=reason, headers={"WWW-Authenticate": "Bearer"})
        return principal

    async def _session(self, scope: HTTPScope, services: Any) -> Principal | None:
        """The principal of the dashboard session cookie, or None (no cookie, forged, expired, revoked token)."""
        assert self.admin_token is not None
        cookie = sessions.cookie_of(scope["headers"])
        session = sessions.open_cookie(self.admin_token, cookie) if cookie else None
        if session is None:
            return None
        if session.subject == sessions.ADMIN:
            return ADMIN
        token = await services.tokens.find_digest(services.db, session.subject)
        if token is None or token.role == Role.AGENT.value:  # agent tokens cannot log in
            return None
        return Principal(Role(token.role), token.org_id, str(token.id))

    async def _principal(self, secret: str, services: Any) -> Principal | None:
        assert self.admin_token is not None
        if tokens.same_secret(secret, self.admin_token):
            return ADMIN
        if not tokens.plausible(secret):
            return None
        token = await services.tokens.find(services.db, secret)
        if token is None:
            return None
        return Principal(Role(token.role), token.org_id, str(token.id))

    def _spend(self, key: str, address: str | None) -> None:
        """Take one request from the key's bucket, or refuse with 429. Anonymous calls from this
        host's loopback are not counted: the host is trusted already."""
        if self.limiter is None or (address is not None and _is_loopback(address)):
            return
        if wait := self.limiter.take(key):
            raise too_many_requests(wait)


def _bearer(scope: HTTPScope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


def _client_address(scope: HTTPScope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AuthMiddleware:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            services = scope["litestar_app"].state.services
            principal = await self.gate.admit(scope, services)
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def middleware(settings: Settings) -> DefineMiddleware:
    """The middleware for create_app: one Gate (and so one set of rate-limit buckets) per app."""
    return DefineMiddleware(AuthMiddleware, gate=Gate(settings))


def bind_refusal(host: str, settings: Settings) -> str | None:
    """Why the server must not listen on `host`, or None. Without an admin token anyone who can reach
    the port could do anything, so only loopback is allowed unless the operator says --insecure."""
    if settings.admin_token is not None or settings.insecure or is_loopback_host(host):
        return None
    return (
        f"refusing to serve {host} without QUALGENT_ADMIN_TOKEN: anyone who reaches it could run "
        "and cancel anything. Set QUALGENT_ADMIN_TOKEN, bind 127.0.0.1, or pass --insecure."
    )


def is_loopback_host(host: str) -> bool:
    return host == "localhost" or _is_loopback(host.strip("[]"))


def startup_notices(settings: Settings) -> list[tuple[int, str]]:
    """What the server says at start-up about who may call it (log level, message)."""
    notices: list[tuple[int, str]] = []
    if settings.admin_token is not None:
        notices.append(
            (logging.INFO, "authentication on: every API call needs a bearer token (QUALGENT_ADMIN_TOKEN set)")
        )
    elif is_loopback_host(settings.host):
        notices.append(
            (
                logging.WARNING,
                f"authentication OFF (no QUALGENT_ADMIN_TOKEN): serving loopback {settings.host} only; "
                "set QUALGENT_ADMIN_TOKEN to serve other hosts",
            )
        )
    else:
        notices.append(
            (
                logging.WARNING,
                f"INSECURE: authentication OFF and serving {settings.host} (--insecure): "
                "anyone who can reach this port may submit, cancel and run anything",
            )
        )
    if settings.rate_limit > 0:
        notices.append(
            (
                logging.INFO,
                f"rate limit: {settings.rate_limit:g} requests/s, bursts of {settings.rate_burst}, "
                "per token (per address without one), counted in this process",
            )
        )
    else:
        notices.append((logging.INFO, "rate limiting off (QUALGENT_RATE_LIMIT=0)"))
    return notices
