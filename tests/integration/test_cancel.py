"""Stopping a background loop that waits for a pooled connection: the server's lease rescue and pruning loops are
such loops, and its shutdown awaits them. On Python 3.11 a cancellation that arrives in the same turn of the
event loop as the awaited connection is lost (psycopg_pool waits with asyncio.wait_for, CPython gh-86296); the
loop then runs on and the shutdown with it. qualgent.aio.cancel_and_wait is what every such stop goes through."""

from __future__ import annotations

import asyncio
import sys

import pytest

from qualgent.aio import cancel_and_wait
from qualgent.server.db.database import Database

pytestmark = pytest.mark.anyio


async def _hold_until_waited_for(db: Database) -> object:
    """Take the pool's only connection and keep it until the loop waits for it."""
    held = await db.pool.getconn()
    for _ in range(400):
        if db.pool.get_stats().get("requests_waiting", 0):
            return held
        await asyncio.sleep(0.005)
    raise AssertionError("the loop never waited for the pool")


async def test_a_loop_whose_cancel_is_lost_while_it_gets_a_connection_is_still_stopped(db_url: str) -> None:
    async with Database(db_url, size=1, application_name="qualgent cancel test") as db:
        rounds: list[int] = []

        async def loop() -> None:  # like the lease rescue's: a statement, a pause, again
            while True:
                async with db.connection() as tx:
                    rounds.append(await tx.value("SELECT 1"))
                await asyncio.sleep(0.01)

        task = asyncio.create_task(loop(), name="parked")
        if sys.version_info < (3, 12):  # the hazard itself, as this Python and psycopg_pool have it
            held = await _hold_until_waited_for(db)
            await db.pool.putconn(held)  # type: ignore[arg-type]
            task.cancel()  # the connection and the cancel arrive in the same turn of the event loop
            await asyncio.wait({task}, timeout=0.5)
            assert not task.done(), "the plain cancel was not lost: this test no longer shows the hazard"
            assert rounds, "the loop got its connection and went on"
        held = await _hold_until_waited_for(db)
        await db.pool.putconn(held)  # type: ignore[arg-type]
        async with asyncio.timeout(10) as guard:  # inline, not wait_for's new task: its first cancel goes in this
            await cancel_and_wait(task)  # same turn and is lost the same way
        assert not guard.expired(), "cancel_and_wait did not stop the loop (the guard's own cancel did)"
        assert task.cancelled()


async def test_cancel_and_wait_lets_a_task_finish_its_clean_up_and_raises_its_own_error(db_url: str) -> None:
    async with Database(db_url, size=1, application_name="qualgent cancel test") as db:
        closed: list[str] = []

        async def cleans_up() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                async with db.connection() as tx:  # clean-up that needs the database, well under a second
                    closed.append(await tx.value("SELECT 'closed'"))

        task = asyncio.create_task(cleans_up())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert closed == ["closed"]
        assert task.cancelled()

        async def fails_on_cancel() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("failed while stopping") from None

        failing = asyncio.create_task(fails_on_cancel())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="failed while stopping"):
            await cancel_and_wait(failing)
