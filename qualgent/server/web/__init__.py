"""The web dashboard (docs/dashboard.md): server-rendered pages at `/`, live from `GET /api/events`.

`router()` is all the app factory needs: the pages, their assets under /static, and HTML error pages. Pages are
Jinja2 templates rendered on the server; a small script (static/dashboard.js, no build step, no framework)
re-renders a page's live part when the event stream reports a change. Every asset is served from the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from qualgent.domain import Conflict, InvalidInput, NotFound, QualgentError
from qualgent.server.api.auth import DASHBOARD_OPT
from qualgent.server.web import access
from qualgent.server.web.pages import DashboardController, render_page

STATIC = Path(__file__).parent / "static"

__all__ = ["router"]


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, NotAuthorizedException) and request.method == "GET":
        return Redirect("/login")
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, exc.detail
    elif isinstance(exc, QualgentError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
        message = exc.message
    else:  # pragma: no cover - the app's own handlers log and answer 500
        raise exc
    return render_page(request, "error.html", access.principal_of(request), status, status=status, message=message)


def router() -> Router:
    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        opt={DASHBOARD_OPT: True},
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),  # revalidated (ETag): a new version shows at once
        send_as_attachment=False,
    )
    return Router(
        path="/",
        route_handlers=[DashboardController, static],
        opt={DASHBOARD_OPT: True},
        include_in_schema=False,
        exception_handlers={HTTPException: _error_page, QualgentError: _error_page, InvalidInput: _error_page},
    )
