"""Claim latency as the queue grows: with 10,000 pending jobs, with 1,000,000, then with 5,000,000 finished jobs
added to the same tables. The target: 1M within 1.5x of 10k, and 5M finished changing nothing.

Method. The scratch database is filled in SQL (`INSERT ... SELECT generate_series`, one transaction per fill,
every index and constraint of the real schema in place) with what a busy installation holds:
- 200 orgs (1 in 10 premium, 2 in 10 enterprise, the rest standard);
- pending groups of 10-20 jobs (15 on average), one per (org, app version, target), targets 60% emulator,
  25% device, 15% browserstack; each job's priority 20% high, 50% medium, 30% low, the group's scheduling
  keys (tier, best priority, oldest job) consistent with its jobs, as `upsert_pending_groups` keeps them;
- finished history in `done` groups of 10-20 jobs spread over 60 days (inside the default retention):
  88% completed, 10% failed, 2% cancelled before they ran; every job that ran has its attempt, 1 in 33 a
  second one after an infrastructure error, with exit codes, durations and a short output tail.
Ids are random over the key space as in production (a group's is an md5, its jobs share its prefix), and
each fill inserts in id order, so the indexes on ids are written in one pass rather than at random pages.
The queue is topped up to each size in turn (jobs already pending count), then the finished jobs are added;
`VACUUM ANALYZE` follows every fill, as autovacuum would eventually.

At each stage, agents registered over HTTP (serving all three targets, or one each) take turns claiming:
`POST /api/agents/{id}/claim` against the running server, timed from the request to the parsed answer, in
batches of 20; each batch's groups are then released (`POST .../groups/{id}/release`, not timed), so their
jobs go back into new pending groups and the queue keeps its size. The same is done in-process with the
queue's own claim transaction (`qualgent.server.queue.claims.claim`) to separate the database from HTTP. Beside the
latencies, the CPU time per claim of the server process and of the database's backends (from /proc, read
between the batches, releases apart): on a shared 2-core machine latency moves with whatever else runs, CPU
time much less. `EXPLAIN (ANALYZE, BUFFERS)` of the claim statement (rolled back) records the index it walks
and the pages it touches: a flat count of buffers is the machine-independent sign of a flat claim.

    python -m benchmarks.scale --database-url postgresql://postgres@127.0.0.1:5432/scratch \\
        [--api-url http://127.0.0.1:3000/api] [--size 10000 --size 1000000] [--finished 5000000] [--samples 300]
        [--quick]

With no --api-url it starts `qgjob server --migrate` on the scratch database itself. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.common import target_for
from benchmarks.postgres import (
    APPLICATION_NAME,
    PostgresProcesses,
    cpu_and_birth,
    cpu_of,
    uptime_ticks,
)
from qualgent.server.bench.common import BenchTarget, percentiles, ratio
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url, normalize_url
from qualgent.server.db.plans import plans_inside
from qualgent.server.db.sql import P
from qualgent.server.queue import claims
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings

ORGS = 200
HISTORY_AGENTS = 50
FINISHED_CHUNK = 1_000_000  # finished jobs per fill transaction
# The history spans the 60 days before yesterday: inside the servers' default retention (90 days), so that no
# server prunes it while it is measured (a prune of millions of rows is a benchmark of its own).
HISTORY_DAYS = 60
LEASE_SECONDS = 30.0
CLAIMS_APPLICATION = "qgjob bench claims"  # the in-process claims' connections: the database's work, as the server's
WARMUP = 10
CLAIM_BATCH = 20  # claims taken before they are given back: their CPU time is measured apart from the releases
# Who claims: an agent serving every target, and one per target (the claim then skips other targets' groups).
AGENT_TARGETS = (["emulator", "device", "browserstack"], ["emulator"], ["device"], ["browserstack"])
TABLES = ("jobs", "job_groups", "attempts", "agents", "orgs")
INDEXES = ("ix_job_groups_claimable", "uq_job_groups_pending_key", "ix_jobs_active_by_group", "pk_jobs")

# Deterministic pseudo-random attributes of job k / group n of a fill (hashint4/8: PostgreSQL's own hash).


def _hash(expr: str, modulo: int) -> str:
    """A deterministic pseudo-random number in [0, modulo) from a bigint expression (and the fill's seed)."""
    return f"mod(abs(CAST(hashint8(CAST({expr} AS bigint) + %(seed)s) AS bigint)), {modulo})"


_PRIORITY = (
    "CAST((ARRAY['high', 'medium', 'low'])[CASE WHEN {h} < 2 THEN 1 WHEN {h} < 7 THEN 2 ELSE 3 END] AS job_priority)"
)
_TARGET = (
    f"CASE WHEN {_hash('s.n * 13', 20)} < 12 THEN 'emulator' "
    f"WHEN {_hash('s.n * 13', 20)} < 17 THEN 'device' ELSE 'browserstack' END"
)
_ORG = f"'bench-org-' || lpad((1 + {_hash('s.n * 7', ORGS)})::text, 3, '0')"
_AT = "(now() - make_interval(secs => %(span_from)s) + make_interval(secs => {k} * %(step)s))"
_TEST_PATH = (
    "'tests/' || (ARRAY['login', 'checkout', 'search', 'profile', 'cart', 'onboarding', 'settings', "
    "'payments'])[1 + mod(k, 8)] || '/case' || mod(k, 37) || '.spec.ts'"
)

_SPEC = f"""
CREATE TEMP TABLE qg_bench_spec ON COMMIT DROP AS
SELECT n, first, least(size, %(jobs)s - first) AS size
FROM (
    SELECT n, size, CAST(sum(size) OVER (ORDER BY n) - size AS bigint) AS first
    FROM (SELECT n, CAST(10 + {_hash("n", 11)} AS bigint) AS size
          FROM generate_series(1, %(jobs)s / 10 + 1) AS n) AS sized
) AS placed
WHERE first < %(jobs)s
"""

_ORGS = f"""
INSERT INTO orgs (id, tier)
SELECT 'bench-org-' || lpad(i::text, 3, '0'),
       CAST(CASE WHEN mod(i, 10) = 0 THEN 'premium' WHEN mod(i, 10) IN (1, 2) THEN 'enterprise' ELSE 'standard' END
            AS org_tier)
FROM generate_series(1, {ORGS}) AS i
ON CONFLICT (id) DO NOTHING
"""

_HISTORY_AGENTS = f"""
INSERT INTO agents (id, name, targets, status, registered_at, last_heartbeat_at)
SELECT md5('qg-bench-agent-' || i)::uuid, 'bench-history-' || i,
       ARRAY[(ARRAY['emulator', 'device', 'browserstack'])[1 + mod(i, 3)]], 'offline',
       now() - interval '91 days', now() - interval '1 day'
FROM generate_series(0, {HISTORY_AGENTS - 1}) AS i
ON CONFLICT (id) DO NOTHING
"""

# Ids: a group's is an md5 (random over the key space, as gen_random_uuid's are), its jobs' share its first
# 12 bytes and count in the last 4. Every fill inserts in id order, so each index keyed by a job or group id
# (jobs, job_groups, attempts) is written in one ordered pass instead of at random pages: the difference
# between minutes and a quarter of an hour for 5M rows once those indexes outgrow shared_buffers.
_GROUP_ID = "CAST(md5(%(tag)s || ':g:' || s.n) AS uuid)"
_JOB_ID = "CAST(left(md5(%(tag)s || ':g:' || s.n), 24) || lpad(to_hex(k - s.first), 8, '0') AS uuid)"
_BEST_PRIORITY = f"""(SELECT min({_PRIORITY.format(h=_hash("k", 10))})
        FROM generate_series(s.first, s.first + s.size - 1) AS k)"""

_PENDING_GROUPS = f"""
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                        available_at, job_count, created_at)
SELECT {_GROUP_ID}, o.id, %(tag)s || '-' || s.n, {_TARGET}, 'pending', o.tier, {_BEST_PRIORITY},
       {_AT.format(k="s.first")}, {_AT.format(k="s.first")}, s.size, {_AT.format(k="s.first")}
FROM qg_bench_spec s
JOIN orgs o ON o.id = {_ORG}
ORDER BY 1
"""

_PENDING_JOBS = f"""
INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, status, group_id, run_after,
                  created_at, updated_at)
SELECT {_JOB_ID}, g.org_id, g.app_version_id, g.target, {_TEST_PATH},
       {_PRIORITY.format(h=_hash("k", 10))}, 'pending', g.id,
       {_AT.format(k="k")}, {_AT.format(k="k")}, {_AT.format(k="k")}
FROM qg_bench_spec s
JOIN job_groups g ON g.id = {_GROUP_ID}
CROSS JOIN LATERAL generate_series(s.first, s.first + s.size - 1) AS k
ORDER BY 1
"""

_AGENT_OF_GROUP = f"CAST(md5('qg-bench-agent-' || mod(s.n, {HISTORY_AGENTS})) AS uuid)"
_DONE_GROUPS = f"""
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                        available_at, job_count, agent_id, claimed_at, finished_at, created_at)
SELECT {_GROUP_ID}, o.id, %(tag)s || '-' || s.n, {_TARGET}, 'done', o.tier, {_BEST_PRIORITY},
       {_AT.format(k="s.first")}, {_AT.format(k="s.first")}, s.size, {_AGENT_OF_GROUP},
       {_AT.format(k="s.first")} + interval '2 minutes', {_AT.format(k="s.first")} + interval '40 minutes',
       {_AT.format(k="s.first")}
FROM qg_bench_spec s
JOIN orgs o ON o.id = {_ORG}
ORDER BY 1
"""

# Finished job k: r decides its final status (88 completed, 10 failed, 2 cancelled while pending, no
# attempt); 1 in 33 of those that ran needed a second attempt after an infrastructure error. The jobs and
# their attempts are written by one statement: the attempts are made from the jobs' RETURNING rows.
_FINISHED = f"""
WITH f AS (
    SELECT {_JOB_ID} AS id, k, g.id AS group_id, g.org_id, g.app_version_id, g.target, g.agent_id,
           {_hash("k * 3", 100)} AS r, mod(k, 33) = 0 AS retried, 20 + mod(k, 280) AS run_s,
           g.claimed_at + make_interval(secs => (k - s.first) * 90) AS started
    FROM qg_bench_spec s
    JOIN job_groups g ON g.id = {_GROUP_ID}
    CROSS JOIN LATERAL generate_series(s.first, s.first + s.size - 1) AS k
), inserted AS (
    INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, status, group_id, agent_id,
                      attempts, max_attempts, run_after, exit_code, duration_ms, output_tail, created_at,
                      updated_at, started_at, finished_at)
    SELECT f.id, f.org_id, f.app_version_id, f.target, {_TEST_PATH},
           {_PRIORITY.format(h=_hash("k", 10))},
           CASE WHEN f.r < 88 THEN 'completed' WHEN f.r < 98 THEN 'failed' ELSE 'cancelled' END,
           f.group_id, CASE WHEN f.r < 98 THEN f.agent_id END,
           CASE WHEN f.r >= 98 THEN 0 WHEN f.retried THEN 2 ELSE 1 END, 3, {_AT.format(k="k")},
           CASE WHEN f.r < 88 THEN 0 WHEN f.r < 98 THEN 1 END,
           CASE WHEN f.r < 98 THEN f.run_s * 1000 END,
           CASE WHEN f.r < 88 THEN '  1 passed (' || f.run_s || 's)'
                WHEN f.r < 98 THEN '  1) ' || {_TEST_PATH} || E'\n     Error: expect(locator).toBeVisible() failed\n'
                                   || E'     Locator: getByText(''Welcome'')\n  1 failed (' || f.run_s || 's)' END,
           {_AT.format(k="k")}, f.started + make_interval(secs => f.run_s),
           CASE WHEN f.r < 98 THEN f.started END,
           CASE WHEN f.r < 98 THEN f.started + make_interval(secs => f.run_s) ELSE {_AT.format(k="k")} END
    FROM f
    ORDER BY f.id
    RETURNING id, group_id, agent_id, status, attempts, exit_code, duration_ms, started_at
)
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms,
                      error)
SELECT j.id, a.number, j.agent_id, j.group_id, at.started, at.started + make_interval(secs => j.duration_ms / 1000.0),
       CASE WHEN a.number < j.attempts THEN 'infra_error' WHEN j.status = 'completed' THEN 'passed'
            ELSE 'test_failed' END,
       CASE WHEN a.number < j.attempts THEN 3 ELSE j.exit_code END,
       j.duration_ms,
       CASE WHEN a.number < j.attempts THEN 'adb: device offline' END
FROM inserted j
CROSS JOIN LATERAL generate_series(1, j.attempts) AS a (number)
CROSS JOIN LATERAL (
    SELECT j.started_at - make_interval(secs => 200 * (j.attempts - a.number)) AS started
) AS at
ORDER BY j.id, a.number
"""

_COUNTS = """
SELECT
    (SELECT count(*) FROM jobs WHERE status = 'pending') AS pending_jobs,
    (SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')) AS finished_jobs,
    (SELECT count(*) FROM jobs) AS jobs,
    (SELECT count(*) FROM job_groups WHERE status = 'pending') AS pending_groups,
    (SELECT count(*) FROM job_groups WHERE status = 'done') AS done_groups,
    (SELECT count(*) FROM attempts) AS attempts
"""


async def measure_claim_scale(
    target: BenchTarget,
    sizes: Sequence[int] = (10_000, 1_000_000),
    finished: int = 5_000_000,
    samples: int = 300,
    *,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Claim latency (HTTP and the database's claim transaction, p50/p99) with the queue topped up to each of
    `sizes` pending jobs in turn, then with `finished` finished jobs added (0: skip); counts, table sizes,
    the claim's plan, CPU time per claim (of the server when `server_pid`, or the target's, is given, and of
    the database's backends when PostgreSQL is local), and the ratios largest/smallest and with/without
    history. JSON-able."""
    if not sizes or samples < 1 or any(s < 1 for s in sizes) or finished < 0:
        raise ValueError("sizes must be positive, samples at least 1, finished at least 0")
    if server_pid is None:
        server_pid = getattr(target, "server_pid", None)
    run = uuid.uuid4().hex[:8]
    stages: list[dict[str, Any]] = []
    async with _Claimers.open(target, server_pid) as claimers:
        await _fill_reference_data(target.database_url)
        for size in sorted(sizes):
            loaded = await _top_up_pending(target.database_url, size, f"{run}-p{size}")
            stages.append(await claimers.stage(f"pending_{size}", samples, loaded))
        if finished:
            loaded = await _add_finished(target.database_url, finished, run)
            largest = max(sizes)
            stages.append(await claimers.stage(f"pending_{largest}_finished_{finished}", samples, loaded))
    return {
        "samples": samples,
        "stages": stages,
        "ratios": _ratios(stages, bool(finished)),
        "server": await _server_facts(target.database_url),
    }


def _ratios(stages: list[dict[str, Any]], with_history: bool) -> dict[str, float | None]:
    """Largest queue vs smallest (target: at most 1.5), and with history vs without (target: about 1)."""
    queue_stages = stages[:-1] if with_history else stages
    pairs = {"largest_vs_smallest": (queue_stages[-1], queue_stages[0])}
    if with_history:
        pairs["finished_vs_without"] = (stages[-1], stages[-2])
    out: dict[str, float | None] = {}
    for name, (a, b) in pairs.items():
        for path in ("http", "db"):
            for pct in ("p50_ms", "p99_ms"):
                out[f"{path}_{pct[:3]}_{name}"] = ratio(_num(a[path][pct]), _num(b[path][pct]))
            for cpu in ("server_cpu_ms_per_claim", "db_cpu_ms_per_claim"):
                if f"{path}_{cpu}" in a:
                    out[f"{path}_{cpu.removesuffix('_ms_per_claim')}_{name}"] = ratio(
                        a[f"{path}_{cpu}"], b[f"{path}_{cpu}"]
                    )
        out[f"plan_buffers_{name}"] = ratio(a["plan"]["buffers"], b["plan"]["buffers"])
    return out


def _num(value: float | int) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else float(value)


class _Claimers:
    """Agents that claim and give back, over HTTP and in-process, and the database they work on."""

    def __init__(
        self,
        target: BenchTarget,
        client: httpx.AsyncClient,
        engine: AsyncEngine,
        queue: Queue,
        conn: psycopg.AsyncConnection[Any],
        server_pid: int | None,
    ) -> None:
        self.target = target
        self.client = client
        self.engine = engine
        self.queue = queue
        self.processes = PostgresProcesses(conn)
        self.server_pid = server_pid
        self.agents: list[tuple[str, list[str]]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, target: BenchTarget, server_pid: int | None) -> Any:
        # The in-process claims' connections count as the database's work, like the server's.
        engine = create_async_engine(
            normalize_url(target.database_url), pool_size=2, connect_args={"application_name": CLAIMS_APPLICATION}
        )
        db = Database(target.database_url, size=2, application_name=CLAIMS_APPLICATION)
        await db.open()
        queue = Queue(db, Settings(database_url=target.database_url, lease_seconds=LEASE_SECONDS))
        try:
            async with (
                httpx.AsyncClient(
                    base_url=target.api_url,
                    headers=target.headers(),
                    timeout=httpx.Timeout(60, connect=30),
                    # Dropped before the server's keep-alive timeout (5 s) can close it under a request.
                    limits=httpx.Limits(keepalive_expiry=2.0),
                ) as client,
                await psycopg.AsyncConnection.connect(
                    libpq_url(target.database_url), autocommit=True, application_name=APPLICATION_NAME
                ) as conn,
            ):
                claimers = cls(target, client, engine, queue, conn, server_pid)
                for index, targets in enumerate(AGENT_TARGETS):
                    response = await client.post("/agents", json={"name": f"bench-claim-{index}", "targets": targets})
                    response.raise_for_status()
                    claimers.agents.append((str(response.json()["id"]), targets))
                try:
                    yield claimers
                finally:
                    for agent_id, _ in claimers.agents:
                        with contextlib.suppress(httpx.HTTPError):
                            await client.delete(f"/agents/{agent_id}")
        finally:
            await db.close()
            await engine.dispose()

    async def stage(self, label: str, samples: int, loaded: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        await asyncio.to_thread(_vacuum_analyze, self.target.database_url)
        loaded = {**loaded, "vacuum_analyze_seconds": round(time.perf_counter() - started, 2)}
        counts = await _counts(self.target.database_url)
        plan = await self._plan()
        out: dict[str, Any] = {"stage": label, **counts, "load": loaded}
        for path, claim_once, release in (
            ("http", self._http_claim, self._http_release),
            ("db", self._db_claim, self._db_release),
        ):
            measured = await self._claims(samples, claim_once, release, server=path == "http")
            out[path] = percentiles(measured.pop("latencies_ms"))
            out.update({f"{path}_{key}": value for key, value in measured.items()})
        out["plan"] = plan
        out["plan_after_claims"] = await self._plan()
        out["load_average_1m"] = round(os.getloadavg()[0], 2)
        out["table_bytes"] = await _table_sizes(self.target.database_url)
        return out

    async def _claims(
        self,
        samples: int,
        claim_once: Callable[[int], Awaitable[tuple[float, Any, int]]],
        release: Callable[[Any], Awaitable[None]],
        server: bool,
    ) -> dict[str, Any]:
        """WARMUP + `samples` claims in batches of CLAIM_BATCH, each batch then given back; the latencies of
        the last `samples`, and the CPU time the database's backends (and the server, for HTTP) spent per
        claim, apart from the releases: CPU time, unlike latency, is not inflated by whatever else the
        machine is doing."""
        latencies: list[float] = []
        jobs = empty = 0
        claim_cpu, release_cpu = _CpuTally(), _CpuTally()
        total = WARMUP + samples
        for first in range(0, total, CLAIM_BATCH):
            batch = range(first, min(total, first + CLAIM_BATCH))
            before = await self._cpu_point()
            held = []
            for i in batch:
                elapsed, claim, claimed_jobs = await claim_once(i)
                if claim is not None:
                    held.append(claim)
                if i >= WARMUP:
                    latencies.append(elapsed)
                    jobs += claimed_jobs
                    empty += claim is None
            claimed = await self._cpu_point()
            for claim in held:
                await release(claim)
            released = await self._cpu_point()
            claim_cpu.add(before, claimed, len(batch))
            release_cpu.add(claimed, released, len(held))
        out = {
            "latencies_ms": latencies,
            "jobs_per_claim": _mean(jobs, samples - empty),
            "empty_claims": empty,
            "db_cpu_ms_per_claim": claim_cpu.backends_ms(),
            "db_cpu_ms_per_release": release_cpu.backends_ms(),
        }
        if server:
            out["server_cpu_ms_per_claim"] = claim_cpu.server_ms()
            out["server_cpu_ms_per_release"] = release_cpu.server_ms()
        return out

    async def _cpu_point(self) -> _CpuPoint:
        processes = await self.processes()
        backends = {}
        for pid, kind in (processes or {}).items():
            if kind == "backend":
                with contextlib.suppress(OSError):  # it just exited
                    backends[pid] = cpu_and_birth(pid)
        return _CpuPoint(uptime_ticks(), cpu_of(self.server_pid), backends if processes is not None else None)

    async def _http_claim(self, i: int) -> tuple[float, Any, int]:
        """One claim over HTTP, timed to the parsed answer: (ms, what release needs or None, jobs claimed)."""
        agent_id, _ = self.agents[i % len(self.agents)]
        started = time.perf_counter()
        response = await self.client.post(f"/agents/{agent_id}/claim", json={})
        body = response.json() if response.status_code == 200 else None
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code not in (200, 204):
            raise RuntimeError(f"claim answered {response.status_code}: {response.text}")
        if body is None:
            return elapsed, None, 0
        return elapsed, (agent_id, body["group_id"], body["token"]), len(body["jobs"])

    async def _http_release(self, claim: tuple[str, str, str]) -> None:
        agent_id, group_id, token = claim
        released = await self.client.post(
            f"/agents/{agent_id}/groups/{group_id}/release", json={"token": token, "reason": "benchmark"}
        )
        released.raise_for_status()

    async def _db_claim(self, i: int) -> tuple[float, Any, int]:
        """One claim transaction in-process (qualgent.server.queue.claims.claim), timed."""
        agent_id, targets = self.agents[i % len(self.agents)]
        agent = uuid.UUID(agent_id)
        started = time.perf_counter()
        got = await claims.claim(self.queue, agent, targets)
        elapsed = (time.perf_counter() - started) * 1000
        if got is None:
            return elapsed, None, 0
        return elapsed, (agent, got), len(got.jobs)

    async def _db_release(self, claim: tuple[uuid.UUID, claims.Claim]) -> None:
        agent, got = claim
        await claims.release(self.queue, agent, got.group_id, got.token, "benchmark")

    async def _plan(self) -> dict[str, Any]:
        """The plan of the claim's own statement (inside qualgent_claim) for the all-targets agent, with actual
        figures and buffers, rolled back."""
        agent_id, targets = self.agents[0]
        params = {"agent_id": uuid.UUID(agent_id), "targets": targets, "lease_seconds": LEASE_SECONDS}
        # The walk in tier, priority, age order: an aging bound no filled group reaches (the aged walk is another
        # index, ix_job_groups_aging, read in the same way).
        params.update({"aging_seconds": 1e9, "held": "[]", "min_chunk_seconds": self.queue.settings.min_chunk_seconds})
        plans = await asyncio.to_thread(_plans_inside, self.target.database_url, P.claim, params)
        # The statement that chose the group: one past the aging bound, else the head of the queue.
        (top, *_) = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith(("WITH aged AS", "WITH head AS"))][
            ::-1
        ]
        return {
            "indexes": sorted(_index_names(top)),
            "buffers": int(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)),
            "execution_ms": round(float(top["Actual Total Time"]), 3),
        }


def _plans_inside(database_url: str, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True, application_name=APPLICATION_NAME) as conn:
        return plans_inside(conn, sql, params, analyze=True)


@dataclass(frozen=True, slots=True)
class _CpuPoint:
    """CPU seconds so far of the server and of each backend of the database (with its birth), at `ticks`."""

    ticks: int
    server: float | None
    backends: dict[int, tuple[float, int]] | None  # None: PostgreSQL is not on this machine


@dataclass
class _CpuTally:
    """CPU seconds summed over intervals between two points, and how many operations they covered."""

    server: float | None = 0.0
    backends: float | None = 0.0
    operations: int = 0

    def add(self, a: _CpuPoint, b: _CpuPoint, operations: int) -> None:
        self.operations += operations
        if self.server is not None:
            self.server = None if a.server is None or b.server is None else self.server + b.server - a.server
        if self.backends is not None:
            if a.backends is None or b.backends is None:
                self.backends = None
                return
            for pid, (cpu, born) in b.backends.items():
                # A connection opened in between counts from its birth; one gone in between is lost.
                start = a.backends[pid][0] if pid in a.backends else (0.0 if born > a.ticks else cpu)
                self.backends += cpu - start

    def _per_operation_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.operations else round(1000 * seconds / self.operations, 3)

    def server_ms(self) -> float | None:
        return self._per_operation_ms(self.server)

    def backends_ms(self) -> float | None:
        return self._per_operation_ms(self.backends)


def _index_names(node: dict[str, Any]) -> set[str]:
    names = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        names |= _index_names(child)
    return names


def _mean(total: int, count: int) -> float | None:
    return round(total / count, 2) if count else None


async def _fill_reference_data(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        await c.execute(_ORGS)
        await c.execute(_HISTORY_AGENTS)


async def _top_up_pending(database_url: str, size: int, tag: str) -> dict[str, Any]:
    """Add pending jobs (in new pending groups) until `size` are pending; the jobs of this fill are created
    over the last hour."""
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        row = await (await c.execute("SELECT count(*) FROM jobs WHERE status = 'pending'")).fetchone()
        jobs = size - int(row[0]) if row else size
        if jobs <= 0:
            return {"jobs": 0, "seconds": 0.0}
        params = {"jobs": jobs, "seed": _seed(tag), "tag": tag, "span_from": 3600.0, "step": 3600.0 / jobs}
        started = time.perf_counter()
        for statement in (_SPEC, _PENDING_GROUPS, _PENDING_JOBS):
            await c.execute(statement, params)
        await c.commit()
        seconds = time.perf_counter() - started
    return {"jobs": jobs, "seconds": round(seconds, 2), "rows_per_second": round(jobs / seconds)}


async def _add_finished(database_url: str, finished: int, run: str) -> dict[str, Any]:
    """`finished` finished jobs (with their done groups and attempts) over the HISTORY_DAYS before yesterday,
    one transaction per FINISHED_CHUNK jobs."""
    started = time.perf_counter()
    chunks = math.ceil(finished / FINISHED_CHUNK)
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        for chunk in range(chunks):
            jobs = min(FINISHED_CHUNK, finished - chunk * FINISHED_CHUNK)
            span = HISTORY_DAYS * 86400.0 / chunks
            tag = f"{run}-f{chunk}"
            params = {
                "jobs": jobs,
                "seed": _seed(tag),
                "tag": tag,
                "span_from": 86400.0 + (chunks - chunk) * span,
                "step": span / jobs,
            }
            for statement in (_SPEC, _DONE_GROUPS, _FINISHED):
                await c.execute(statement, params)
            await c.commit()
    seconds = time.perf_counter() - started
    return {"jobs": finished, "seconds": round(seconds, 2), "rows_per_second": round(finished / seconds)}


def _seed(tag: str) -> int:
    return int(uuid.uuid5(uuid.NAMESPACE_OID, tag).int % 1_000_000)


def _vacuum_analyze(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True, application_name=APPLICATION_NAME) as conn:
        conn.execute("VACUUM (ANALYZE) jobs, job_groups, attempts, agents, orgs")


async def _counts(database_url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        cursor = await c.execute(_COUNTS)
        row = await cursor.fetchone()
        assert row is not None
        assert cursor.description is not None
        return {col.name: int(value) for col, value in zip(cursor.description, row, strict=True)}


async def _table_sizes(database_url: str) -> dict[str, int | None]:
    """pg_total_relation_size of each table (heap, indexes, TOAST) and pg_relation_size of the hot indexes."""
    query = ", ".join(
        [f"pg_total_relation_size(to_regclass('{t}'))" for t in TABLES]
        + [f"pg_relation_size(to_regclass('{i}'))" for i in INDEXES]
    )
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        row = await (await c.execute(f"SELECT {query}")).fetchone()
    assert row is not None
    return {name: None if value is None else int(value) for name, value in zip(TABLES + INDEXES, row, strict=True)}


async def _server_facts(database_url: str) -> dict[str, Any]:
    """What the figures depend on: PostgreSQL's version and the settings that matter to them."""
    names = ("server_version", "shared_buffers", "autovacuum", "synchronous_commit", "fsync", "max_wal_size")
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url), application_name=APPLICATION_NAME) as c:
        facts = {}
        for name in names:
            row = await (await c.execute(f"SHOW {name}")).fetchone()
            facts[name] = row[0] if row else None
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a scratch database (it is filled with jobs)")
    parser.add_argument("--api-url", help="a qgjob server on that database (default: start one)")
    parser.add_argument("--server-pid", type=int, help="that server's pid, for its CPU time")
    parser.add_argument("--token", help="an admin token, if the server needs one")
    parser.add_argument("--size", type=int, action="append", help="pending jobs, repeatable (10000, 1000000)")
    parser.add_argument("--finished", type=int, default=None, help="finished jobs added last (5000000)")
    parser.add_argument("--samples", type=int, default=None, help="claims timed per stage and path (300)")
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 pending, 50,000 finished, 100 claims")
    args = parser.parse_args(argv)
    sizes = args.size or ([1_000, 10_000] if args.quick else [10_000, 1_000_000])
    finished = args.finished if args.finished is not None else (50_000 if args.quick else 5_000_000)
    samples = args.samples or (100 if args.quick else 300)
    with target_for(args.database_url, args.api_url, args.token, args.server_pid) as target:
        result = asyncio.run(measure_claim_scale(target, sizes, finished, samples, server_pid=target.server_pid))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
