"""asyncio helpers shared by the server and the agent."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

CANCEL_AGAIN_SECONDS = 1.0
"""How long a cancelled task may take to end before it is cancelled again: long enough for its clean-up (closing a
connection), short enough that a lost cancellation delays a shutdown by about that much."""


async def cancel_and_wait(task: asyncio.Task[Any], again_after: float = CANCEL_AGAIN_SECONDS) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again while it runs on.

    A cancellation can be lost on Python 3.11: `asyncio.wait_for` returns its inner result when that result and the
    cancellation arrive in the same turn of the loop (CPython gh-86296, fixed in 3.12 where wait_for is built on
    asyncio.timeout). psycopg_pool waits for a connection that way, and the agent's heartbeat waits on its re-arm
    event that way. A loop whose one cancellation was lost runs on for ever, and whatever awaited it (a server's
    shutdown, an agent stopping on SIGTERM) waits with it. Re-raises the task's own exception, not its
    cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_after)
    with contextlib.suppress(asyncio.CancelledError):
        await task  # done: returns at once, raising only what the task itself raised
