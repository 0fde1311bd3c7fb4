"""Commit to waiter: how long after a job's final COMMIT a client long-polling on it has its answer, with
`waiters` long-polls (GET /api/jobs/{id}/wait, one per job) parked on the server at once, against PostgreSQL's own
COMMIT-to-notification time; and the server's database connections while they are parked (waiting must not hold a
connection per waiter). Method and figures: docs/waiting.md, "Benchmark: commit to waiter". `qgjob bench` measures
it with 1 and --waiters long-polls; `python -m benchmarks.waiting` alone."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from qualgent.server.bench.common import BenchTarget, percentiles, ratio
from qualgent.server.db.engine import libpq_url

APPLICATION_NAME = "qgjob bench"  # this benchmark's own connections, left out of the counts
LONG_POLL_SECONDS = 60
SUBMIT_CHUNK = 1000
WAITERS_PER_CLIENT = 25
# A job's final state as the product writes it: the UPDATE and the notification every state change sends
# (qualgent_notify_jobs), in one transaction.
_FINISH = (
    "UPDATE jobs SET status = 'completed', finished_at = now(), updated_at = now() "
    "WHERE id = ANY(%(job_ids)s::uuid[]) AND status IN ('pending', 'running')"
)
_NOTIFY = "SELECT qualgent_notify_jobs('completed', %(job_ids)s::uuid[])"
_CONNECTIONS = (
    "SELECT count(*), count(*) FILTER (WHERE state IS DISTINCT FROM 'idle') "
    "FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name IS DISTINCT FROM %(me)s"
)


async def measure_wait_latency(target: BenchTarget, waiters: int, finishes: int = 200) -> dict[str, Any]:
    """Latency from a job's final COMMIT to the waiting client's response with `waiters` long-polls
    parked, over `finishes` finishes; the server's database connections while parked; PostgreSQL's own
    commit-to-notification time as the baseline. A flat, JSON-able dict (NaN where nothing was measured)."""
    if waiters < 1 or finishes < 1:
        raise ValueError("waiters and finishes must be at least 1")
    baseline = await asyncio.to_thread(pg_notify_baseline, target.database_url, 200)
    run = _Run(target, waiters)
    async with run.open():
        finished = 0
        while finished < finishes:
            count = min(waiters, finishes - finished)
            await run.round(count, measure_connections=finished == 0)
            finished += count
    latency = percentiles(run.latencies_ms)
    return {
        "waiters": waiters,
        "finishes": len(run.latencies_ms),
        "latency": latency,
        "wrong_answers": run.wrong_answers,
        "db_connections_parked_1": run.connections_1,
        "db_connections_parked": run.connections_all,
        "db_connections_busy_parked": run.busy_all,
        "finish_transaction": percentiles(run.transactions_ms),
        "pg_notify_baseline": baseline,
        "p50_ratio": ratio(latency["p50_ms"], baseline["p50_ms"]),
        "p99_ratio": ratio(latency["p99_ms"], baseline["p99_ms"]),
    }


@dataclass
class _Run:
    target: BenchTarget
    waiters: int
    spacing: float = 0.005
    latencies_ms: list[float] = field(default_factory=list)
    transactions_ms: list[float] = field(default_factory=list)
    wrong_answers: int = 0
    connections_1: int | None = None
    connections_all: int | None = None
    busy_all: int | None = None
    _client: httpx.AsyncClient | None = None
    _pollers: list[httpx.AsyncClient] = field(default_factory=list)
    _pool: AsyncConnectionPool | None = None

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            self.target.database_url, min_size=1, max_size=2, kwargs={"application_name": APPLICATION_NAME}, open=False
        )
        await pool.open()
        try:
            async with contextlib.AsyncExitStack() as stack:
                self._client = await stack.enter_async_context(self._http(10))
                for _ in range(math.ceil(self.waiters / WAITERS_PER_CLIENT)):
                    self._pollers.append(await stack.enter_async_context(self._http(WAITERS_PER_CLIENT)))
                self._pool = pool
                yield
        finally:
            await pool.close()

    def _http(self, connections: int) -> httpx.AsyncClient:
        """httpcore's pool looks at each of its connections whenever a response is done: one client holding a
        thousand long-polls would spend more time on that than on the answer, so the long-polls are spread over
        clients of WAITERS_PER_CLIENT connections (a CI job has one of its own anyway)."""
        return httpx.AsyncClient(
            base_url=self.target.api_url,
            headers=self.target.headers(),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(LONG_POLL_SECONDS + 30, connect=30, pool=60),
        )

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None
        return self._client

    async def round(self, timed: int, measure_connections: bool) -> None:
        job_ids = await self._submit(self.waiters)
        parked_before = await self._parked()
        polls: dict[str, asyncio.Task[tuple[float, str]]] = {}
        try:
            if measure_connections:
                polls[job_ids[0]] = asyncio.create_task(self._long_poll(self._pollers[0], job_ids[0]))
                await self._until_parked(parked_before + 1)
                await self._until_quiet()
                self.connections_1, _ = await self._connections()
            for index, job_id in enumerate(job_ids):
                if job_id not in polls:
                    client = self._pollers[index // WAITERS_PER_CLIENT]
                    polls[job_id] = asyncio.create_task(self._long_poll(client, job_id))
            await self._until_parked(parked_before + len(job_ids))
            await self._until_quiet()
            if measure_connections:
                self.connections_all, self.busy_all = await self._connections()
            for job_id in job_ids[:timed]:
                await self._timed_finish(job_id, polls[job_id])
                await asyncio.sleep(self.spacing)
        finally:
            await self._finish(job_ids)  # nothing stays parked on the server
            for task in polls.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)

    async def _timed_finish(self, job_id: str, poll: asyncio.Task[tuple[float, str]]) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            began = time.perf_counter()
            await self._write_final(conn, [job_id])
            committing = time.perf_counter()
            await conn.commit()
            committed = time.perf_counter()
        self.transactions_ms.append((committed - began) * 1000)
        arrived, status = await asyncio.wait_for(poll, 30)
        if status != "completed":
            self.wrong_answers += 1
            return
        self.latencies_ms.append((arrived - committing) * 1000)

    async def _write_final(self, conn: psycopg.AsyncConnection[Any], job_ids: Sequence[str]) -> None:
        """_FINISH and _NOTIFY, in the transaction the caller commits."""
        await conn.execute(_FINISH, {"job_ids": list(job_ids)})
        await conn.execute(_NOTIFY, {"job_ids": list(job_ids)})

    async def _finish(self, job_ids: Sequence[str]) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            await self._write_final(conn, job_ids)
            await conn.commit()

    async def _long_poll(self, client: httpx.AsyncClient, job_id: str) -> tuple[float, str]:
        response = await client.get(f"/jobs/{job_id}/wait", params={"timeout": LONG_POLL_SECONDS})
        arrived = time.perf_counter()
        response.raise_for_status()
        return arrived, str(response.json()["status"])

    async def _submit(self, count: int) -> list[str]:
        run = uuid.uuid4().hex[:8]
        ids: list[str] = []
        for start in range(0, count, SUBMIT_CHUNK):
            body = [
                {"org_id": "bench", "app_version_id": f"waiters-{run}", "test_path": f"tests/t{i}.spec.ts"}
                for i in range(start, min(count, start + SUBMIT_CHUNK))
            ]
            response = await self.client.post("/jobs", json=body)
            response.raise_for_status()
            ids += [job["id"] for job in response.json()]
        return ids

    async def _parked(self) -> int:
        response = await self.client.get("/monitoring/metrics")
        response.raise_for_status()
        return int(response.json()["listen"]["job_waiters"])  # agents' parked claims come and go

    async def _until_parked(self, expected: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while (parked := await self._parked()) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {parked} of {expected} long-polls parked after {timeout} s")
            await asyncio.sleep(0.02)

    async def _until_quiet(self, timeout: float = 60.0) -> None:
        """A waiter counts as parked as soon as it watches its job, before its first read of it: wait
        until no connection of the server's is busy (twice in a row), so the initial reads are over."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            _, busy = await self._connections()
            quiet = quiet + 1 if busy == 0 else 0
            await asyncio.sleep(0.01)

    async def _connections(self) -> tuple[int, int]:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_CONNECTIONS, {"me": APPLICATION_NAME})).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def pg_notify_baseline(database_url: str, samples: int = 200, spacing: float = 0.005) -> dict[str, float | int]:
    """PostgreSQL alone: a LISTEN connection in its own thread, blocked in `notifies()`, and another
    connection committing `pg_notify`; from COMMIT sent to the notification received, in ms. (From COMMIT's
    return, PostgreSQL's delivery measures ~0 and often below: the listener wakes before the committing thread
    resumes, so no ratio could be taken.)"""
    conninfo = libpq_url(database_url)
    channel = f"qualgent_bench_{uuid.uuid4().hex[:8]}"
    received: dict[int, float] = {}
    listening = threading.Event()

    def listen() -> None:
        with psycopg.connect(conninfo, autocommit=True, application_name=APPLICATION_NAME) as conn:
            conn.execute(f"LISTEN {channel}")
            listening.set()
            for note in conn.notifies(timeout=30, stop_after=samples):
                received[int(note.payload)] = time.perf_counter()

    listener = threading.Thread(target=listen, name="qualgent-bench-listen", daemon=True)
    listener.start()
    if not listening.wait(30):
        raise RuntimeError("the baseline's LISTEN connection did not start")
    committing: dict[int, float] = {}
    with psycopg.connect(conninfo, application_name=APPLICATION_NAME) as conn:
        for i in range(samples):
            conn.execute("SELECT pg_notify(%s, %s)", (channel, str(i)))
            committing[i] = time.perf_counter()
            conn.commit()
            time.sleep(spacing)
    listener.join(35)
    return percentiles([(received[i] - committing[i]) * 1000 for i in committing if i in received])
