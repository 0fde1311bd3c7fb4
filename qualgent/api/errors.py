"""Our errors to HTTP, in one place. Every error body is JSON: status_code, error, detail, extra."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from qualgent.domain import Conflict, InvalidInput, NotFound, QualgentError, StaleClaim

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


def qualgent_error(_: Request[object, object, object], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, QualgentError)
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
    return _body(status, type(exc).__name__, exc.message, exc.details or None)


def http_error(_: Request[object, object, object], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, HTTPException)
    return _body(exc.status_code, type(exc).__name__, exc.detail, exc.extra or None)


def database_unavailable(request: Request[object, object, object], exc: Exception) -> Response[dict[str, object]]:
    """The database is down or restarting: a retryable 503, not a crash."""
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
    response = _body(503, "DatabaseUnavailable", "the database is unavailable; retry shortly")
    response.headers["Retry-After"] = "1"
    return response


def database_error(request: Request[object, object, object], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return database_unavailable(request, exc)
    log.exception("database error during %s %s", request.method, request.url.path, exc_info=exc)
    return _body(500, "InternalError", "internal error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    QualgentError: qualgent_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    PoolTimeout: database_unavailable,
}
