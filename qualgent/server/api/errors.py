"""Our errors to HTTP, in one place. Every error body is JSON: status_code, error, detail, extra."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from qualgent.domain import Conflict, InvalidInput, NotFound, QualgentError, StaleClaim
from qualgent.server.api.auth import policy
from qualgent.server.api.schemas import ErrorOut

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[QualgentError], int]] = [
    (StaleClaim, 409),
    (Conflict, 409),
    (NotFound, 404),
    (InvalidInput, 400),
]


def _body(status: int, error: str, detail: str, extra: object = None) -> Response[dict[str, object]]:
    content: dict[str, object] = {"status_code": status, "error": error, "detail": detail}
    if extra:
        content["extra"] = extra
    return Response(content, status_code=status)


def qualgent_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, QualgentError)
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
    return _body(status, type(exc).__name__, exc.message, exc.details or None)


def http_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, HTTPException)
    extra = exc.extra
    if isinstance(extra, list):
        extra = [_readable(item) for item in _located(extra, exc.__cause__)]
    response = _body(exc.status_code, type(exc).__name__, exc.detail, extra or None)
    response.headers.update(exc.headers or {})  # Retry-After of a 429, WWW-Authenticate of a 401
    return response


_AT = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)(.*)`$")


def _located(extra: list[Any], cause: BaseException | None) -> list[Any]:
    """Litestar names only the parameter of a bad value ("data" for a whole bulk body); msgspec's own
    error knows the exact place, e.g. `[1].priority` for the second job of a list. Use it."""
    match = _AT.search(str(cause)) if isinstance(cause, msgspec.ValidationError) else None
    if match is None:
        return extra
    parameter, rest = match.groups()
    if parameter == "data":
        where, key = "body", rest.removeprefix(".") or "body"
    else:
        where, key = parameter, parameter + rest
    return [
        {**item, "key": key}
        if isinstance(item, dict) and (item.get("source") == where or item.get("key") == where)
        else item
        for item in extra
    ]


_PATTERN_MEANING = {
    "test_path": "must be printable text, not starting with '-' (it must never read as a command-line option)",
}


def _readable(item: object) -> object:
    """msgspec names the regex a value failed; a user needs to know what the rule is."""
    if isinstance(item, dict) and "matching regex" in str(item.get("message", "")):
        key = str(item.get("key", ""))
        meaning = _PATTERN_MEANING.get(key.rsplit(".", 1)[-1], "must be printable text with no control characters")
        return {**item, "message": f"{key or 'value'} {meaning}"}
    return item


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """The database is down or restarting: a retryable 503, not a crash."""
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
    response = _body(503, "DatabaseUnavailable", "the database is unavailable; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """From psycopg (qualgent.server.db.database). A connection that broke (a PostgreSQL restart, a killed backend) or
    could not be made is psycopg.OperationalError: the pool drops it and tests the others (a restart broke them all),
    and the client retries on the 503."""
    if isinstance(exc, psycopg.OperationalError):
        services = getattr(request.app.state, "services", None)
        if services is not None:
            services.queue.db.check_soon()
        return database_unavailable(request, exc)
    log.exception("database error during %s %s", request.method, request.url.path, exc_info=exc)
    return _body(500, "InternalError", "internal error")


_ANSWERS = {
    400: "Bad input: the body says which field and why",
    401: "No token, or an unknown or revoked one",
    403: "The token's role or org does not allow this",
    404: "No such object (or not one this token may see)",
    409: "The object's state does not allow this",
    413: "The request body is too large",
    429: "Rate limit exceeded: retry after Retry-After seconds",
    503: "The database is unavailable: retry shortly",
}


def document_error_responses(app: Litestar) -> None:
    """Put every error answer a route can give into the OpenAPI document, so that clients (and the
    fuzzer, tests/integration/test_fuzz.py) can hold every answer to the document."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            methods = set(getattr(handler, "http_methods", ())) - {"OPTIONS", "HEAD"}
            if not methods:
                continue
            codes = set(_ANSWERS)
            if all(policy(method, route.path_format) is None for method in methods):
                codes -= {401, 403}
            if methods == {"GET"}:
                codes -= {409, 413}
            answers = {
                code: ResponseSpec(data_container=ErrorOut, description=_ANSWERS[code], generate_examples=False)
                for code in sorted(codes)
            }
            handler.responses = {**answers, **(handler.responses or {})}


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    QualgentError: qualgent_error,
    HTTPException: http_error,
    psycopg.Error: database_error,
    # No connection within POOL_TIMEOUT_SECONDS (every one busy, or none can be made): retry shortly.
    psycopg_pool.PoolTimeout: database_unavailable,
}
