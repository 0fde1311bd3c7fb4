"""Waiting for jobs without holding a database connection: read, and if the answer is not there yet,
sleep on the hub until a notification (or the safety interval) says to read again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from qualgent.domain import FINAL_STATUSES, JobStatus
from qualgent.server.notify.hub import Hub
from qualgent.server.queue import jobs
from qualgent.server.queue.core import Queue

T = TypeVar("T")


async def wait_for_job(q: Queue, hub: Hub, job_id: uuid.UUID, timeout: float) -> dict[str, Any]:
    """The job as soon as it is final, or as it is when `timeout` runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    with hub.watch_jobs([job_id]) as waiter:  # watch first: a change between read and wait still wakes us
        while True:
            job = await jobs.get(q, job_id, with_attempts=True)
            remaining = deadline - asyncio.get_running_loop().time()
            if JobStatus(job["status"]) in FINAL_STATUSES or remaining <= 0 or hub.closing:
                return job
            await waiter.wait(hub.safety_timeout(remaining))


async def wait_for_change(
    q: Queue, hub: Hub, known: Mapping[uuid.UUID, str | None], timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    """The jobs as soon as any of them has a status other than the caller's `known` one (None: unknown,
    so answer at once), or as they are at the timeout. Returns (jobs, changed)."""
    ids: Sequence[uuid.UUID] = list(known)
    deadline = asyncio.get_running_loop().time() + timeout
    with hub.watch_jobs(ids) as waiter:
        while True:
            current = await jobs.get_many(q, ids)
            changed = any(job["status"] != known[job["id"]] for job in current)
            remaining = deadline - asyncio.get_running_loop().time()
            if changed or remaining <= 0 or hub.closing:
                return current, changed
            await waiter.wait(hub.safety_timeout(remaining))


async def claim_or_wait(
    hub: Hub,
    targets: Sequence[str],
    timeout: float,
    claim: Callable[[], Awaitable[T | None]],
    recheck: float = 5.0,
    gone: asyncio.Event | None = None,
) -> T | None:
    """Try `claim`; while there is nothing, sleep until work is announced for one of `targets` and try
    again, up to `timeout`. `recheck` bounds each sleep: jobs leaving retry backoff are not announced.
    `gone` set: the agent hung up (or died): no more tries, for a claim is its sign of life, and one made
    for a dead agent would keep it shown alive and hold a group until its lease lapsed."""
    deadline = asyncio.get_running_loop().time() + timeout
    with hub.watch_work(targets) as waiter:
        while True:
            if gone is not None and gone.is_set():
                return None
            got = await claim()
            remaining = deadline - asyncio.get_running_loop().time()
            if got is not None or remaining <= 0 or hub.closing:
                return got
            await waiter.wait(min(remaining, recheck))
