"""The one way the server runs SQL: a psycopg 3 pool behind a small object.

Statements are named in `.sql` files (qualgent.server.db.sql: `P.claim`, `TOKENS.find_token`) in psycopg's `%(name)s`
style.
A statement runs either alone, in autocommit on a pooled connection (`db.rows(...)`: no BEGIN/COMMIT round trips,
the agents' claims and reports), or with others in one transaction (`async with db.transaction() as tx`).
Rows come back as dicts, or typed: pass `row=SomeStruct` (a msgspec Struct or any class built from keyword
arguments, one per column) and each row is built straight from the columns.

SQLAlchemy is not used at run time: it describes the tables (qualgent.server.db.models) for Alembic only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast, overload

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import AsyncRowFactory, dict_row, kwargs_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from qualgent.aio import cancel_and_wait
from qualgent.server.db.engine import CONNECT_ARGS, POOL_TIMEOUT_SECONDS, libpq_url

log = logging.getLogger(__name__)
Row = dict[str, Any]
T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any] | None
# A named statement, or one composed from a named template (qualgent.server.db.sql).
Statement = str | sql.SQL | sql.Composed


class NoRow(LookupError):
    """A statement that must return a row returned none."""


def _factory(row: Callable[..., Any] | None) -> AsyncRowFactory[Any]:
    return dict_row if row is None else kwargs_row(row)


class Tx:
    """Statements on one connection: in a transaction (`Database.transaction`) or in autocommit
    (`Database.connection`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:
        """For what is not one statement with parameters (COPY, psycopg.sql compositions)."""
        return self._conn

    @overload
    async def rows(self, statement: Statement, params: Params = None, row: None = None) -> list[Row]: ...
    @overload
    async def rows(self, statement: Statement, params: Params, row: Callable[..., T]) -> list[T]: ...
    async def rows(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> list[Any]:
        """Every row the statement returns (none for a statement that returns no rows)."""
        async with self._conn.cursor(row_factory=_factory(row)) as cursor:
            await cursor.execute(statement, params)
            return await cursor.fetchall() if cursor.description else []

    @overload
    async def first(self, statement: Statement, params: Params = None, row: None = None) -> Row | None: ...
    @overload
    async def first(self, statement: Statement, params: Params, row: Callable[..., T]) -> T | None: ...
    async def first(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> Any:
        """The first row, or None."""
        async with self._conn.cursor(row_factory=_factory(row)) as cursor:
            await cursor.execute(statement, params)
            return await cursor.fetchone() if cursor.description else None

    @overload
    async def one(self, statement: Statement, params: Params = None, row: None = None) -> Row: ...
    @overload
    async def one(self, statement: Statement, params: Params, row: Callable[..., T]) -> T: ...
    async def one(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> Any:
        """The row a one-row statement returns (NoRow if none)."""
        found = await self.first(statement, params, row)
        if found is None:
            raise NoRow(str(statement)[:80])
        return found

    async def value(self, statement: Statement, params: Params = None) -> Any:
        """The first column of the first row (None when there is no row)."""
        cursor = await self._conn.execute(statement, params)
        found = await cursor.fetchone() if cursor.description else None
        return None if found is None else found[0]

    async def values(self, statement: Statement, params: Params = None) -> list[Any]:
        """The first column of every row."""
        cursor = await self._conn.execute(statement, params)
        return [r[0] for r in await cursor.fetchall()] if cursor.description else []

    async def execute(self, statement: Statement, params: Params = None) -> int:
        """Run it; the number of rows it touched."""
        cursor = await self._conn.execute(statement, params)
        return cursor.rowcount


class Database:
    """One pool of connections in autocommit; a transaction is opened only where one is asked for."""

    def __init__(
        self,
        url: str,
        size: int = 20,
        application_name: str = "qgjob server",
        connect_args: Mapping[str, Any] = CONNECT_ARGS,
    ) -> None:
        """`connect_args`: libpq's, the server's timeouts by default (a maintenance command may want none)."""
        self.url = libpq_url(url)
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, **connect_args, "application_name": application_name},
            timeout=POOL_TIMEOUT_SECONDS,
            open=False,
            name="qualgent",
            configure=_configure,
        )
        self._checking: asyncio.Task[None] | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The pool itself (its stats for the metrics, a wait for its first connection)."""
        return self._pool

    async def open(self, wait: bool = False) -> None:
        """`wait`: until the first connection is made (psycopg_pool.PoolTimeout if none can be), for a command
        that has nothing to do without one; a server opens at once and answers 503 while the database is away."""
        await self._pool.open(wait=wait, timeout=POOL_TIMEOUT_SECONDS)

    def check_soon(self) -> None:
        """A connection broke (PostgreSQL restarted, backends were killed): its idle siblings most likely broke with
        it. Test them all once, in the background, replacing the broken ones, so that each does not fail a request
        of its own first. One check at a time; called from the event loop (a request's error handler)."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check(), name="qualgent-pool-check")

    async def _check(self) -> None:
        try:
            await self._pool.check()
        except Exception as err:  # the database still away: the next broken connection asks again
            log.info("checking the pool's connections failed: %s", str(err).splitlines()[0] if str(err) else err)

    async def close(self) -> None:
        if self._checking is not None:
            await cancel_and_wait(self._checking)
        await self._pool.close()

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Statements in one transaction: committed when the block ends, rolled back if it raises."""
        async with self._pool.connection() as conn, conn.transaction():
            yield Tx(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Tx]:
        """Statements on one connection, each committed on its own (session settings, LISTEN-free reads)."""
        async with self._pool.connection() as conn:
            yield Tx(conn)

    # One statement alone: straight on a pooled connection, in autocommit (every authenticated request that misses
    # the token cache comes here, so without connection()'s generator-based context manager).

    @overload
    async def rows(self, statement: Statement, params: Params = None, row: None = None) -> list[Row]: ...
    @overload
    async def rows(self, statement: Statement, params: Params, row: Callable[..., T]) -> list[T]: ...
    async def rows(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> list[Any]:
        async with self._pool.connection() as conn:
            return await Tx(conn).rows(statement, params, row)

    @overload
    async def first(self, statement: Statement, params: Params = None, row: None = None) -> Row | None: ...
    @overload
    async def first(self, statement: Statement, params: Params, row: Callable[..., T]) -> T | None: ...
    async def first(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> Any:
        async with self._pool.connection() as conn:
            return await Tx(conn).first(statement, params, row)

    @overload
    async def one(self, statement: Statement, params: Params = None, row: None = None) -> Row: ...
    @overload
    async def one(self, statement: Statement, params: Params, row: Callable[..., T]) -> T: ...
    async def one(self, statement: Any, params: Params = None, row: Callable[..., Any] | None = None) -> Any:
        async with self._pool.connection() as conn:
            return await Tx(conn).one(statement, params, row)

    async def value(self, statement: Statement, params: Params = None) -> Any:
        async with self._pool.connection() as conn:
            return await Tx(conn).value(statement, params)

    async def values(self, statement: Statement, params: Params = None) -> list[Any]:
        async with self._pool.connection() as conn:
            return await Tx(conn).values(statement, params)

    async def execute(self, statement: Statement, params: Params = None) -> int:
        async with self._pool.connection() as conn:
            return await Tx(conn).execute(statement, params)

    async def tuple_row(self, statement: Statement, params: Params = None) -> tuple[Any, ...]:
        """The one row of a one-row statement as a tuple (the hot path's functions answer in a few columns)."""
        found = await self.tuple_first(statement, params)
        if found is None:
            raise NoRow(str(statement)[:80])
        return found

    async def tuple_first(self, statement: Statement, params: Params = None) -> tuple[Any, ...] | None:
        """The first row as a tuple, or None: no row factory at all, for a read made on most requests (the token
        lookup)."""
        async with self._pool.connection() as conn:
            return cast("tuple[Any, ...] | None", await (await conn.execute(statement, params)).fetchone())


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # The hot path's functions answer in JSON (a claim and its jobs, a report's jobs): msgspec reads it faster.
    set_json_loads(msgspec.json.decode, conn)
