"""URLs, the server's connection settings, and the sync SQLAlchemy engine Alembic's migrations run on. The server
runs every statement through qualgent.server.db.database (psycopg), never through SQLAlchemy."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://) and use the psycopg 3 driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"qualgent needs PostgreSQL, got a {parsed.get_backend_name()} URL")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same database as a libpq URL, for psycopg used directly (LISTEN, COPY, benchmarks, tests)."""
    return make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


# No request may hang on an unreachable or stuck database: fail (503, retried by clients) instead.
CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "options": "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000",
    "application_name": "qgjob server",
}
POOL_TIMEOUT_SECONDS = 10.0


def create_sync_engine(url: str) -> Engine:
    return create_engine(normalize_url(url), pool_pre_ping=True)
