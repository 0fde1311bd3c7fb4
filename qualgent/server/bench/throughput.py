"""qualgent's own figures: bulk submit over HTTP, and the end-to-end drain of a queue by agents.

The agents are the real `qualgent.agent.loop.Agent` (claims, heartbeats, batched progress reports, the cancel
watch), several in this process, with a no-op runner in place of a test process: what is measured is the
orchestration, not a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from qualgent.agent.executor import RunResult
from qualgent.agent.loop import Agent, AgentConfig, Runner
from qualgent.agent.templates import CommandTemplate
from qualgent.server.api.schemas import MAX_BULK
from qualgent.server.bench.common import BenchTarget, percentiles

TARGET = "emulator"


class NoopRun:
    """A test that passes at once, noting when it ran in its agent's `Runs`."""

    def __init__(self, runs: Runs, group: str) -> None:
        self.runs, self.group = runs, group

    async def execute(self) -> RunResult:
        self.runs.ran(self.group)
        return RunResult(0, 0, "")

    async def stop(self) -> None:
        return None


class Runs:
    """One agent's tests as its runner sees them (`noop {app_version_id} {test_path}`): the wait for the next
    group, once the jobs are in, is from its last test of a group to its first test of the next one (the group's
    closing report claims the next group), or from the submit's answer to its first test."""

    def __init__(self, since: list[float]) -> None:
        self.since = since  # [drain start], set when the jobs are in
        self.group: str | None = None
        self.last = 0.0
        self.claim_ms: list[float] = []

    def runner(self, argv: list[str], timeout: float, env: dict[str, str]) -> Runner:
        return NoopRun(self, argv[1])

    def ran(self, group: str) -> None:
        now = time.perf_counter()
        if group != self.group and self.since:
            waited_from = max(self.last, self.since[0])
            self.claim_ms.append((now - waited_from) * 1000)
        self.group, self.last = group, now


def submission(jobs: int, group_size: int, org_id: str, tag: str, first: int = 0) -> bytes:
    """`jobs` jobs in groups of `group_size` (one app version per group), as one bulk POST /api/jobs body;
    `first`: the index of its first job in a larger run split into several bodies."""
    body = [
        {
            "org_id": org_id,
            "app_version_id": f"{tag}-build-{i // group_size}",
            "test_path": f"tests/{i % group_size}.spec.ts",
            "target": TARGET,
        }
        for i in range(first, first + jobs)
    ]
    return json.dumps(body).encode()


async def bulk_submit(target: BenchTarget, jobs: int, group_size: int, repeat: int = 3) -> dict[str, Any]:
    """Rows per second of one bulk POST /api/jobs of `jobs` jobs, request sent to answer read (best of
    `repeat`; the body is encoded beforehand, as the raw insert's arrays are built beforehand)."""
    best, timings = 0.0, []
    headers = {"Content-Type": "application/json", **target.headers()}
    async with httpx.AsyncClient(base_url=target.api_url, timeout=300) as http:
        for round_ in range(repeat):
            body = submission(jobs, group_size, "bench-submit", f"s{round_}")
            started = time.perf_counter()
            response = await http.post("/jobs", content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 201 or len(response.json()) != jobs:
                raise RuntimeError(f"bulk submit answered {response.status_code}: {response.text[:300]}")
            timings.append(round(elapsed * 1000, 1))
            best = max(best, jobs / elapsed)
    await _discard(target.database_url, "bench-submit")  # not for the agents of the next phase
    return {"jobs": jobs, "rows_per_s": round(best, 1), "request_ms": timings}


async def vacuum_analyze(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for table in ("orgs", "job_groups", "jobs", "attempts", "agents"):
            await conn.execute(f"VACUUM ANALYZE {table}")


async def _discard(database_url: str, org_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE org_id = %s AND status = 'pending'",
            (org_id,),
        )
        await conn.execute("UPDATE job_groups SET status = 'done' WHERE org_id = %s AND status = 'pending'", (org_id,))


async def drain(
    target: BenchTarget, jobs: int, group_size: int, agents: int, org_id: str = "bench-drain"
) -> dict[str, Any]:
    """End to end: `agents` agents wait for work; `jobs` jobs arrive in one bulk submit; the clock runs from
    the submit's answer until no job is pending or running."""
    logging.getLogger("qualgent.agent").setLevel(logging.WARNING)
    since: list[float] = []
    runs = [Runs(since) for _ in range(agents)]
    fleet = [
        Agent(
            AgentConfig(
                api_url=target.api_url,
                token=target.agents_token,
                targets=[TARGET],
                install=None,
                run=CommandTemplate.parse("noop {app_version_id} {test_path}"),
                name=f"bench-agent-{org_id}-{i}",
                runner=runs[i].runner,
                handle_signals=False,
            )
        )
        for i in range(agents)
    ]
    tasks = [asyncio.create_task(a.run_forever()) for a in fleet]
    try:
        async with httpx.AsyncClient(base_url=target.api_url, timeout=30, headers=target.headers()) as http:
            await wait_parked(http, f"bench-agent-{org_id}-", agents, lambda: any(t.done() for t in tasks))

        def failed() -> str | None:
            stopped = [t.exception() for t in tasks if t.done()]
            return f"an agent stopped: {stopped}" if stopped else None

        elapsed = await timed_drain(target, jobs, group_size, org_id, failed, since.append)
    finally:
        for agent in fleet:
            agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    return {
        "jobs": jobs,
        "agents": agents,
        "group_size": group_size,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "claim_latency": percentiles([ms for r in runs for ms in r.claim_ms]),
    }


async def wait_parked(
    http: httpx.AsyncClient, prefix: str, count: int, stopped: Callable[[], bool], timeout: float = 60
) -> None:
    """Until `count` agents named `prefix`... are registered and the server holds as many claims parked, waiting
    for work (its LISTEN hub's waiters that are not waiting on jobs): the drain's clock starts with them ready."""
    deadline = time.monotonic() + timeout
    while True:
        rows = (await http.get("/agents")).json()
        listen = (await http.get("/monitoring/metrics")).json()["listen"]
        ready = sum(1 for a in rows if a["name"].startswith(prefix) and a["status"] != "offline")
        if ready >= count and listen["waiters"] - listen["job_waiters"] >= count:
            return
        if time.monotonic() > deadline or stopped():
            raise RuntimeError(f"{ready} of {count} bench agents registered and waiting for work")
        await asyncio.sleep(0.05)


async def timed_drain(
    target: BenchTarget,
    jobs: int,
    group_size: int,
    org_id: str,
    failed: Callable[[], str | None],
    on_start: Callable[[float], Any],
) -> float:
    """Submit `jobs` jobs for agents already waiting, and time them from the submit's answer until none is pending
    or running (read every 10 ms: a small fraction of any drain worth timing). Every job must have completed after
    exactly one attempt."""
    async with (
        httpx.AsyncClient(base_url=target.api_url, timeout=300, headers=target.headers()) as http,
        await psycopg.AsyncConnection.connect(target.database_url, autocommit=True) as conn,
    ):
        # At most MAX_BULK jobs a request: a larger run is submitted in several, back to back, the clock starting at
        # the first answer (its jobs are being claimed already; the later submits are part of the drain).
        bodies = [
            submission(min(MAX_BULK, jobs - first), group_size, org_id, org_id, first)
            for first in range(0, jobs, MAX_BULK)
        ]
        for index, body in enumerate(bodies):
            response = await http.post("/jobs", content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 201:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
            if index == 0:
                started = time.perf_counter()
                on_start(started)
        while await _unfinished(conn, org_id):
            if problem := failed():
                raise RuntimeError(problem)
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        completed = await _completed(conn, org_id)
    if completed != jobs:
        raise RuntimeError(f"{completed} of {jobs} jobs completed after one attempt")
    return elapsed


# Is any job left? Asked of the org's groups, through the partial indexes of pending and of running groups: a job
# is pending or running only in a group that is (a group is done once none of its jobs is), and the count of jobs
# completed is checked at the end. Asking `jobs` instead would walk the table past every finished row (the bulk
# submits' and the earlier rounds' included), many times a second, on the machine whose CPU the drain is measured on.
_UNFINISHED = """
SELECT EXISTS (SELECT 1 FROM job_groups WHERE status = 'pending' AND org_id = %(org)s)
    OR EXISTS (SELECT 1 FROM job_groups WHERE status = 'running' AND org_id = %(org)s)"""


async def _unfinished(conn: psycopg.AsyncConnection[Any], org_id: str) -> bool:
    row = await (await conn.execute(_UNFINISHED, {"org": org_id})).fetchone()
    return bool(row and row[0])


async def _completed(conn: psycopg.AsyncConnection[Any], org_id: str) -> int:
    query = "SELECT count(*) FROM jobs WHERE org_id = %s AND status = 'completed' AND attempts = 1"
    row = await (await conn.execute(query, (org_id,))).fetchone()
    return int(row[0]) if row else 0
