"""qualgent's own figures: bulk submit over HTTP, and the end-to-end drain of a queue by agents.

The agents are the real `qualgent.agent.loop.Agent` (claims, heartbeats, batched progress reports, the cancel
watch), several in this process, with a no-op runner in place of a test process: what is measured is the
orchestration, not a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg

from qualgent.agent.executor import RunResult
from qualgent.agent.loop import Agent, AgentConfig, Runner
from qualgent.agent.reporter import Reporter
from qualgent.agent.templates import CommandTemplate
from qualgent.api.schemas import MAX_BULK
from qualgent.bench.common import BenchTarget, CpuMeter, percentiles

TARGET = "emulator"


class NoopRun:
    """A test that passes at once."""

    async def execute(self) -> RunResult:
        return RunResult(0, 0, "")

    async def stop(self) -> None:
        return None


def _noop(argv: list[str], timeout: float, env: dict[str, str]) -> Runner:
    return NoopRun()


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


class _TimedAgent(Agent):
    """The product's agent, recording how long it waits for its next group once the queue is full: a claim
    request, or the group's last report when that claims the next group too (then_claim)."""

    def __init__(self, config: AgentConfig, since: list[float]) -> None:
        super().__init__(config)
        self._since = since  # [drain start], set when the jobs are in
        self.claim_ms: list[float] = []
        self.in_group = False
        self.last_group_done = 0.0  # when this agent was last done with a group: its closing report answered

    async def _claim(self) -> dict[str, Any] | None:
        started = time.perf_counter()
        return self._timed(started, await super()._claim())

    async def _run_group(self, claim: dict[str, Any], then_claim: bool = True) -> None:
        self.in_group = True
        try:
            await super()._run_group(claim, then_claim)
        finally:
            self.in_group = False
            self.last_group_done = time.perf_counter()

    async def _finish_reports(self, reporter: Reporter, then_claim: bool) -> dict[str, Any] | None:
        started = time.perf_counter()
        return self._timed(started, await super()._finish_reports(reporter, then_claim))

    def _timed(self, started: float, claim: dict[str, Any] | None) -> dict[str, Any] | None:
        """Count the wait for a group that came, once the jobs are in."""
        if claim is not None and self._since and started >= self._since[0]:
            self.claim_ms.append((time.perf_counter() - started) * 1000)
        return claim


async def drain(
    target: BenchTarget, jobs: int, group_size: int, agents: int, org_id: str = "bench-drain"
) -> dict[str, Any]:
    """End to end: `agents` agents wait for work; `jobs` jobs arrive in one bulk submit; the clock runs from
    the submit's answer until no job is pending or running (read from the database every 20 ms)."""
    logging.getLogger("qualgent.agent").setLevel(logging.WARNING)
    since: list[float] = []
    fleet = [
        _TimedAgent(
            AgentConfig(
                api_url=target.api_url,
                token=target.agents_token,
                targets=[TARGET],
                install=None,
                run=CommandTemplate.parse("noop {test_path}"),
                name=f"bench-agent-{i}",
                runner=_noop,
                handle_signals=False,
            ),
            since,
        )
        for i in range(agents)
    ]
    tasks = [asyncio.create_task(a.run_forever()) for a in fleet]
    try:

        def registered() -> bool:
            return all(a.agent_id for a in fleet) or any(t.done() for t in tasks)

        await _until(registered, 30, "the bench agents did not register")
        await asyncio.sleep(0.5)  # each agent's first claim is parked, waiting for work

        def failed() -> str | None:
            stopped = [t.exception() for t in tasks if t.done()]
            return f"an agent stopped: {stopped}" if stopped else None

        async def ended() -> float:
            # The database says every group is done; an agent may not have read its closing report's answer yet.
            await _until(lambda: not any(a.in_group for a in fleet), 30, "the bench agents did not finish their groups")
            return max(a.last_group_done for a in fleet)

        elapsed, cpu = await _timed_drain(target, jobs, group_size, org_id, failed, since.append, ended)
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
        "claim_latency": percentiles([ms for a in fleet for ms in a.claim_ms]),
        "cpu": cpu,
    }


async def drain_with_processes(target: BenchTarget, jobs: int, group_size: int, processes: int) -> dict[str, Any]:
    """End to end with real `qgjob agent` processes, each running `true` as the test: as an operator deploys
    them, a process per test included."""
    fleet = _start_agent_processes(target, processes)
    try:
        async with httpx.AsyncClient(base_url=target.api_url, timeout=30, headers=target.headers()) as http:
            await _wait_registered(http, fleet)

        def failed() -> str | None:
            return "a qgjob agent process exited" if any(p.poll() is not None for p in fleet) else None

        elapsed, cpu = await _timed_drain(target, jobs, group_size, "bench-processes", failed, lambda _: None)
    finally:
        _stop_processes(fleet)
    return {
        "jobs": jobs,
        "processes": processes,
        "group_size": group_size,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "cpu": cpu,
    }


def _start_agent_processes(target: BenchTarget, processes: int) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUALGENT_", "QGJOB_"))}
    env["QGJOB_API_URL"] = target.api_url
    if target.agents_token:
        env["QGJOB_TOKEN"] = target.agents_token
    true = shutil.which("true") or "/bin/true"
    command = [sys.executable, "-m", "qualgent", "agent", "--target", TARGET, "--log-level", "warning"]
    command += ["--run", f"{true} {{test_path}}"]
    return [
        subprocess.Popen([*command, "--name", f"bench-process-{i}"], env=env, stdout=subprocess.DEVNULL)
        for i in range(processes)
    ]


def _stop_processes(fleet: list[subprocess.Popen[bytes]]) -> None:
    for process in fleet:
        process.terminate()
    for process in fleet:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _wait_registered(http: httpx.AsyncClient, fleet: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        rows = (await http.get("/agents")).json()
        if sum(1 for a in rows if a["name"].startswith("bench-process-") and a["status"] != "offline") >= len(fleet):
            break
        if time.monotonic() > deadline or any(p.poll() is not None for p in fleet):
            raise RuntimeError("the qgjob agent processes did not start")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # each one's first claim is parked, waiting for work


async def _timed_drain(
    target: BenchTarget,
    jobs: int,
    group_size: int,
    org_id: str,
    failed: Callable[[], str | None],
    on_start: Callable[[float], Any],
    ended: Callable[[], Awaitable[float]] | None = None,
) -> tuple[float, dict[str, float]]:
    """Submit `jobs` jobs for agents already waiting, and time them from the submit's answer until none is pending
    or running (read every 20 ms), or, given `ended` (agents in this process), until the server answered the report
    that closed the last group: as the raw loop is timed until its last transaction returns, not up to 20 ms later.
    Every job must have completed after exactly one attempt."""
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
        meter = CpuMeter(target.server_pid)
        for index, body in enumerate(bodies):
            response = await http.post("/jobs", content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 201:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
            if index == 0:
                meter.start()
                started = time.perf_counter()
                on_start(started)
        while await _unfinished(conn, org_id):
            if problem := failed():
                raise RuntimeError(problem)
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
        if ended is not None and (last := await ended()) > started:  # not before the clock started (a tiny run)
            finished = last
        elapsed = finished - started
        cpu = meter.stop()
        completed = await _completed(conn, org_id)
    if completed != jobs:
        raise RuntimeError(f"{completed} of {jobs} jobs completed after one attempt")
    return elapsed, cpu


# Is any job left? Asked of the org's groups, through the partial indexes of pending and of running groups: a job
# is pending or running only in a group that is (a group is done once none of its jobs is), and the count of jobs
# completed is checked at the end. Asking `jobs` instead walked the table past every finished row (the bulk
# submits' and the earlier rounds' included), up to several ms per read, 50 reads a second, on the machine whose
# CPU the drain is measured on.
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


async def _until(predicate: Any, timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{failure} in time")
        await asyncio.sleep(0.05)
