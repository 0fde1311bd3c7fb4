"""H2-merge: what qualgent.queue.{claims,_common,jobs,orphans,history} (and selection's bulk actions, which call
_common in its transaction) run on until they take the Queue (qualgent.db.database); delete this module then.

The hot path's statements on the transaction's own psycopg connection.

The agents' claims and progress reports run a handful of short statements each, thousands of times a second;
SQLAlchemy's execution layer (greenlet hop, compiled-cache lookup, result wrapping) costs more than such a
statement does in PostgreSQL. These run on the very connection and transaction SQLAlchemy opened (`engine.begin()`
commits or rolls back as usual), in psycopg's parameter style (qualgent.db.sql.P), returning plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncConnection

from qualgent.db.database import Database
from qualgent.db.engine import CONNECT_ARGS, POOL_TIMEOUT_SECONDS, libpq_url

Row = Mapping[Any, Any]  # a psycopg dict row, or SQLAlchemy's RowMapping where the slow path made it


class Raw:
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:
        """For what has no named statement (COPY)."""
        return self._connection

    @classmethod
    async def of(cls, conn: AsyncConnection) -> Raw:
        fairy = await conn.get_raw_connection()
        return cls(cast("psycopg.AsyncConnection[Any]", fairy.driver_connection))

    async def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        async with self._connection.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(sql, params)
            return cast("list[Row]", await cursor.fetchall()) if cursor.description else []


class Direct:
    """The agents' hot path as single statements (the stored functions of migration 0009) in autocommit, on a
    psycopg pool of its own: no BEGIN and COMMIT round trips, no SQLAlchemy execution layer, one statement per
    claim or report. (The token lookup and everything else run on qualgent.db.database.)"""

    def __init__(self, url: str, size: int = 10, application_name: str = "qgjob server") -> None:
        self._shared = False
        self._pool = AsyncConnectionPool(
            libpq_url(url),
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, **CONNECT_ARGS, "application_name": application_name},
            timeout=POOL_TIMEOUT_SECONDS,
            open=False,
            name="qualgent-direct",
            configure=_configure,
        )

    @classmethod
    def sharing(cls, db: Database) -> Direct:
        """On the database's own pool (the same autocommit connections): the server keeps one pool, not two."""
        direct = cls.__new__(cls)
        direct._shared = True
        direct._pool = db.pool
        return direct

    async def open(self) -> None:
        if not self._shared:
            await self._pool.open()

    async def close(self) -> None:
        if not self._shared:
            await self._pool.close()

    async def value(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The one value a one-row, one-column statement returns."""
        return (await self.row(sql, params))[0]

    async def row(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The one row a one-row statement returns."""
        row = await self.first(sql, params)
        assert row is not None, "a one-row statement returned none"
        return row

    async def first(self, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row a statement returns, or None."""
        async with self._pool.connection() as conn:
            row: tuple[Any, ...] | None = await (await conn.execute(sql, params)).fetchone()
            return row


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # The functions answer in JSON (a claim and its jobs, a report's jobs): msgspec reads it several times faster.
    set_json_loads(msgspec.json.decode, conn)
