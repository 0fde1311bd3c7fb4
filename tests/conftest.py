"""The PostgreSQL every test talks to, and a fresh, migrated database per test.

Where the server comes from, in order:
- QUALGENT_TEST_DATABASE_URL (any database on a server we may CREATE DATABASE on), e.g.
  postgresql://postgres@127.0.0.1:5432/postgres;
- a Docker engine, through testcontainers (PostgreSQL 18);
- otherwise the embedded PostgreSQL 18 that `qgjob server` uses by default: the newcomer's path.

Alembic migrates one template database per test session; each test gets `CREATE DATABASE ... TEMPLATE`
of it (a file copy, ~50 ms), so every test starts from the real migrations, never `create_all`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from qualgent.server.db import migrate
from qualgent.server.db.database import Database
from qualgent.server.db.embedded import EmbeddedPostgres
from qualgent.server.db.engine import libpq_url, normalize_url

_names = itertools.count()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _docker_available() -> bool:
    return Path("/var/run/docker.sock").exists() or bool(os.environ.get("DOCKER_HOST"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A SQLAlchemy URL to a maintenance database on a server the tests may create databases on."""
    if url := os.environ.get("QUALGENT_TEST_DATABASE_URL"):
        yield normalize_url(url)
        return
    if _docker_available() and os.environ.get("QUALGENT_TEST_DOCKER", "1") != "0":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18-alpine", driver="psycopg") as container:
            yield normalize_url(container.get_connection_url())
        return
    data_dir = Path(tempfile.mkdtemp(prefix="qualgent-test-pg-"))
    embedded = EmbeddedPostgres(data_dir)
    try:
        embedded.start()
        yield embedded.url("postgres")
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """The name of a database migrated to head by Alembic, cloned by every test."""
    name = f"qualgent_template_{os.getpid()}"
    url = create_database(pg_server, name)
    migrate.upgrade(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    yield name
    drop_database(pg_server, name)


@pytest.fixture
def db_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh database for this test, at the schema's head revision."""
    name = f"qualgent_test_{os.getpid()}_{next(_names)}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    with contextlib.suppress(psycopg.OperationalError):
        drop_database(pg_server, name)


@pytest.fixture
def empty_db_url(pg_server: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"qualgent_empty_{os.getpid()}_{next(_names)}"
    yield create_database(pg_server, name)
    drop_database(pg_server, name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """The server's own way to run SQL (qualgent.server.db.database), on this test's migrated database."""
    async with Database(db_url, size=5, application_name="qualgent tests") as made:
        yield made
