"""Who is looking at the dashboard, and whether a form really came from it.

- With QUALGENT_ADMIN_TOKEN set, the auth middleware (qualgent.server.api.auth) has put the session's principal on the
  request, or None: a page then sends the browser to the login form.
- Without it, the server listens on loopback only (unless --insecure) and everyone is the admin, as for the
  API; the dashboard also refuses a request whose Host is not a loopback name, so a web page cannot reach it
  through a DNS name rebound to 127.0.0.1.
- Every form carries a CSRF token equal to the `qualgent_csrf` cookie (a double submit): another site can
  make a browser send the cookie, but can neither read it nor set it, so it cannot fill the field. The
  `Origin` header, when a browser sends one, must also be this server.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from qualgent.domain.roles import Role
from qualgent.server.api.auth import Principal, is_loopback_host
from qualgent.server.api.deps import Services

CSRF_COOKIE = "qualgent_csrf"
CSRF_FIELD = "_csrf"


def principal_of(request: Request[Any, Any, Any]) -> Principal | None:
    principal: Principal | None = request.state.get("principal")
    return principal


def check_host(request: Request[Any, Any, Any], services: Services) -> None:
    settings = services.settings
    if settings.admin_token is not None or settings.insecure:
        return
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    client = request.client.host if request.client else ""
    if not is_loopback_host(host) or not is_loopback_host(client):
        raise PermissionDeniedException(
            detail="without QUALGENT_ADMIN_TOKEN the dashboard answers this host only (open it at 127.0.0.1)"
        )


def may_act(principal: Principal, org_id: str) -> bool:
    """Cancel and retry: the admin, or a submitter for its own org."""
    return principal.role is Role.ADMIN or (principal.role is Role.SUBMITTER and principal.org_id == org_id)


def csrf_token(request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The token forms carry, and the cookie to set when the browser has none yet."""
    current = request.cookies.get(CSRF_COOKIE)
    if current and 20 <= len(current) <= 100:
        return current, None
    fresh = secrets.token_urlsafe(32)
    return fresh, cookie(request, CSRF_COOKIE, fresh, max_age=None)


def cookie(request: Request[Any, Any, Any], name: str, value: str, max_age: int | None) -> Cookie:
    return Cookie(
        key=name,
        value=value,
        path="/",
        httponly=True,
        samesite="lax",  # a link from chat or CI opens the page logged in; POSTs still need the CSRF token
        secure=request.url.scheme == "https",
        max_age=max_age,
    )


async def check_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The form's fields, after its CSRF token and origin are checked (403 otherwise)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise PermissionDeniedException(detail="a form from another site was refused (Origin does not match)")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    sent = fields.pop(CSRF_FIELD, "")
    cookie_value = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not cookie_value or not hmac.compare_digest(sent.encode(), cookie_value.encode()):
        raise PermissionDeniedException(detail="the form's CSRF token is missing or stale: reload the page and retry")
    return fields


def require_principal(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal is None:
        raise NotAuthorizedException(detail="log in first")
    return principal
