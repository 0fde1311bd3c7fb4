"""How a test waits for something to happen: on the event itself, polled with a deadline, never a fixed sleep.

`wait_for` (threads, subprocesses) and `until` (the event loop) return the predicate's first truthy value, and fail
with `what` once `timeout` has passed. `until`'s predicate may be a coroutine function. `parked` is the event a
waiting client or agent sets off: the server's LISTEN hub holds that many waiters asleep until a notification."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 30.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def _listen(answer: httpx.Response) -> dict[str, int]:
    answer.raise_for_status()
    return dict(answer.json()["listen"])


async def parked(client: httpx.AsyncClient, waiters: int = 0, jobs: int = 0, path: str = "monitoring/metrics") -> None:
    """Until the server holds at least `waiters` waiters parked, of which at least `jobs` wait on jobs (the rest are
    agents' claims waiting for work). `client` is based at the API (`.../api`) unless `path` says otherwise."""

    async def enough() -> bool:
        listen = _listen(await client.get(path))
        return listen["waiters"] >= max(waiters, jobs) and listen["job_waiters"] >= jobs

    await until(enough, what=f"{waiters} waiter(s), {jobs} on jobs, parked on the server")


def parked_now(client: httpx.Client, waiters: int = 0, jobs: int = 0) -> bool:
    """The same, once, from a thread (a subprocess's test): whether the server holds them parked right now."""
    listen = _listen(client.get("/monitoring/metrics"))
    return listen["waiters"] >= max(waiters, jobs) and listen["job_waiters"] >= jobs
