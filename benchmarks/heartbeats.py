"""What a fleet of heartbeating agents costs: 1,000 agents beating every 10 s, some of them holding a claim.

Method. `agents` agents register over HTTP; a `holding` share of them each claim a group (one job submitted
per group for them) and name it in every heartbeat, as `qgjob agent` does while it runs a group; the others
beat with no claim, as idle agents do. Each agent beats `PUT /api/agents/{id}/heartbeat` every `interval` s
(a random phase, then the interval with +-`jitter` of itself) for `duration` s, over keep-alive
connections. Measured:
- each heartbeat's latency, from the request to the parsed answer, and the beats the server refused or
  whose claims it said were lost (there must be none);
- CPU: the server process (when its pid is given) and the PostgreSQL backends serving this database
  (from /proc, when PostgreSQL runs on this machine), each as a % of one core over the run, next to the
  same figures over an idle window of `idle_seconds` between the claims and the first beat (server and
  database doing nothing but their own timers; 12 s also lets the claims' table statistics reach
  pg_stat_user_tables, and is cut short so that the claims outlive it); PostgreSQL's background processes
  (WAL writer, checkpointer...) are shown apart: they serve the whole cluster;
- WAL per heartbeat: the records between the flushed WAL positions before and after the run are read back
  every 2 s with pg_walinspect (installed in the scratch database for the measurement when
  missing, dropped after; it needs a superuser); each transaction that wrote to `agents` is one beat, and its
  records (commit and full-page images included) are what the beat cost. Beside it, this database's WAL per
  second, idle and beating, and the whole cluster's (anything else on the same PostgreSQL writes there too).
  Each statement of one heartbeat is also run under `EXPLAIN (ANALYZE, WAL, BUFFERS)`, rolled back;
- table churn from `pg_stat_user_tables` of `agents` and `job_groups`: updates, the share of them that were
  HOT (no index entry written, pruned without VACUUM), dead tuples left, and table sizes before and after.
Afterwards every agent is deregistered (its claim goes back) and the jobs submitted for it are cancelled.

    python -m benchmarks.heartbeats --database-url postgresql://postgres@127.0.0.1:5432/scratch \\
        [--api-url http://127.0.0.1:3000/api --server-pid PID] [--agents 1000] [--interval 10] [--duration 30]

With no --api-url it starts `qgjob server --migrate` on the scratch database itself. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from benchmarks.common import target_for
from benchmarks.postgres import APPLICATION_NAME, PostgresCpu, PostgresProcesses, cpu_of
from qualgent.server.bench.common import BenchTarget, percentiles
from qualgent.server.db.engine import libpq_url
from qualgent.server.db.sql import P

CONNECTIONS = 100  # keep-alive connections the fleet's beats share
KEEPALIVE_SECONDS = 2.0
WAL_READ_EVERY = 2.0  # seconds: a checkpoint recycles the WAL before it soon after, so it is read as it comes
WAL_KEYS = ("records", "bytes", "fpi_bytes", "beats", "beat_records", "beat_bytes", "beat_fpi_bytes")
# This database's WAL between two LSNs (pg_walinspect; block references read "rel tablespace/database/relation"):
# records on its relations, and every record (commits included) of the transactions that wrote them. A beat
# is a transaction that wrote to `agents` (every heartbeat updates its agent's row); its bytes are those of
# its records and of the records on `agents` pages outside any transaction (pruning, hint bits). A beat's
# commit may fall in the next step: the beats of the previous step are carried over.
_WAL_OF_DATABASE = """
WITH wal AS (
    SELECT CAST(xid AS text) AS xid, record_length, fpi_length,
           block_ref LIKE %(database)s AS here, block_ref LIKE %(agents)s AS on_agents
    FROM pg_get_wal_records_info(CAST(%(start)s AS pg_lsn), CAST(%(end)s AS pg_lsn))
), xacts AS (
    SELECT xid, bool_or(beat) AS beat, bool_or(carried) AS carried
    FROM (
        SELECT xid, on_agents AS beat, false AS carried FROM wal WHERE here AND xid <> '0'
        UNION ALL
        SELECT x, true, true FROM unnest(CAST(%(carried)s AS text[])) AS x
    ) AS u
    GROUP BY xid
), ours AS (
    SELECT w.*, coalesce(x.beat, false) OR w.on_agents AS of_beat
    FROM wal w LEFT JOIN xacts x USING (xid)
    WHERE w.here OR x.xid IS NOT NULL
)
SELECT count(*) AS records, coalesce(sum(record_length), 0) AS bytes, coalesce(sum(fpi_length), 0) AS fpi_bytes,
       (SELECT count(*) FROM xacts WHERE beat AND NOT carried) AS beats,
       (SELECT array_agg(xid) FROM xacts WHERE beat AND NOT carried) AS beat_xids,
       count(*) FILTER (WHERE of_beat) AS beat_records,
       coalesce(sum(record_length) FILTER (WHERE of_beat), 0) AS beat_bytes,
       coalesce(sum(fpi_length) FILTER (WHERE of_beat), 0) AS beat_fpi_bytes
FROM ours
"""
SUBMIT_CHUNK = 1000
TABLES = ("agents", "job_groups")


async def measure_heartbeats(
    target: BenchTarget,
    agents: int = 1000,
    interval: float = 10.0,
    duration: float = 30.0,
    *,
    holding: float = 0.1,
    jitter: float = 0.1,
    server_pid: int | None = None,
    idle_seconds: float = 12.0,
    settle_seconds: float = 12.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """Heartbeat latency and what `agents` agents beating every `interval` s for `duration` s cost the server
    (its CPU when `server_pid`, or the target's, is given) and PostgreSQL (CPU, WAL, table churn), `holding`
    of them with a claim. JSON-able."""
    if agents < 1 or interval <= 0 or duration <= 0 or not 0 <= holding <= 1 or not 0 <= jitter < 1:
        raise ValueError("agents >= 1, interval and duration > 0, holding in [0, 1], jitter in [0, 1)")
    if server_pid is None:
        server_pid = getattr(target, "server_pid", None)
    fleet = _Fleet(target, interval, jitter, random.Random(seed))
    async with fleet.open():
        await fleet.register(agents)
        await fleet.claim(round(agents * holding))
        # The claims must outlive the idle window and the first beat's random phase.
        idle_seconds = min(idle_seconds, max(0.0, 0.8 * fleet.lease_seconds - interval * (1 + jitter)))
        idle = await fleet.meter(idle_seconds, server_pid) if idle_seconds > 0 else None
        before = await fleet.database.snapshot()
        run = await fleet.meter(duration, server_pid, beating=True)
        beats = len(fleet.latencies_ms)
        expected = before["tables"]["agents"]["n_tup_upd"] + beats
        after = await fleet.database.snapshot(settle_until_updates=expected, settle_seconds=settle_seconds)
        statements = await fleet.database.heartbeat_wal(fleet.holder_for_explain())
    return {
        "agents": agents,
        "holding_claims": len(fleet.claims),
        "interval_s": interval,
        "duration_s": duration,
        "idle_s": round(idle.wall, 2) if idle else 0.0,
        "beats": beats,
        "beats_per_second": round(beats / run.wall, 1),
        "errors": fleet.errors,
        "lost_claims": fleet.lost,
        "latency": percentiles(fleet.latencies_ms),
        **_cpu_figures(run, idle),
        **_wal_figures(run, idle),
        "statement_wal": statements,
        "tables": {t: _churn(before["tables"][t], after["tables"][t]) for t in TABLES},
        "database": before["facts"],
    }


@dataclass
class _Window:
    """What a stretch of time cost: wall seconds, CPU seconds of the server and of PostgreSQL, the WAL it spans."""

    wall: float
    server_cpu: float | None
    backend_cpu: float | None
    background_cpu: float | None
    wal: dict[str, Any]  # _WalReader.summary()


def _cpu_figures(run: _Window, idle: _Window | None) -> dict[str, float | None]:
    def percent(seconds: float | None, window: _Window | None) -> float | None:
        return None if seconds is None or window is None else round(100 * seconds / window.wall, 2)

    return {
        "server_cpu_seconds": None if run.server_cpu is None else round(run.server_cpu, 3),
        "server_cpu_percent": percent(run.server_cpu, run),
        "server_cpu_percent_idle": percent(idle.server_cpu if idle else None, idle),
        "db_backend_cpu_seconds": None if run.backend_cpu is None else round(run.backend_cpu, 3),
        "db_backend_cpu_percent": percent(run.backend_cpu, run),
        "db_backend_cpu_percent_idle": percent(idle.backend_cpu if idle else None, idle),
        "db_background_cpu_percent": percent(run.background_cpu, run),
        "db_background_cpu_percent_idle": percent(idle.background_cpu if idle else None, idle),
    }


def _wal_figures(run: _Window, idle: _Window | None) -> dict[str, Any]:
    """Per beat: over the beats found in the WAL read back. Per second: when all of the window's was read."""

    def per(value: int | None, count: float | None) -> float | None:
        return None if value is None or not count else round(value / count, 1)

    def rate(window: _Window | None) -> float | None:
        return per(window.wal["bytes"], window.wall) if window and window.wal["complete"] else None

    wal = run.wal
    return {
        "wal_beats_read": wal["beats"],
        "wal_bytes_per_beat": per(wal["beat_bytes"], wal["beats"]),
        "wal_records_per_beat": per(wal["beat_records"], wal["beats"]),
        "wal_fpi_bytes_per_beat": per(wal["beat_fpi_bytes"], wal["beats"]),
        "wal_bytes_per_second": rate(run),
        "wal_bytes_per_second_idle": rate(idle),
        "wal_cluster_bytes_per_second": per(wal["cluster_bytes"], run.wall),
        "wal_cluster_bytes_per_second_idle": per(idle.wal["cluster_bytes"], idle.wall) if idle else None,
    }


def _churn(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    updates = after["n_tup_upd"] - before["n_tup_upd"]
    hot = after["n_tup_hot_upd"] - before["n_tup_hot_upd"]
    return {
        "updates": updates,
        "hot_updates": hot,
        "hot_share": round(hot / updates, 3) if updates else None,
        "dead_tuples_after": after["n_dead_tup"],
        "live_tuples": after["n_live_tup"],
        "bytes_before": before["bytes"],
        "bytes_after": after["bytes"],
    }


@dataclass
class _Fleet:
    target: BenchTarget
    interval: float
    jitter: float
    rng: random.Random
    agent_ids: list[str] = field(default_factory=list)
    claims: dict[str, dict[str, str]] = field(default_factory=dict)  # agent id -> {group_id, token}
    lease_seconds: float = math.inf  # as the claims' answers give it
    job_ids: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    lost: int = 0
    _client: httpx.AsyncClient | None = None
    _database: _Database | None = None

    @contextlib.asynccontextmanager
    async def open(self) -> Any:
        # Idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s) can close one
        # just as a request goes out on it.
        limits = httpx.Limits(
            max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS, keepalive_expiry=KEEPALIVE_SECONDS
        )
        timeout = httpx.Timeout(60, connect=30, pool=60)
        async with (
            httpx.AsyncClient(
                base_url=self.target.api_url, headers=self.target.headers(), limits=limits, timeout=timeout
            ) as client,
            await psycopg.AsyncConnection.connect(
                libpq_url(self.target.database_url), autocommit=True, application_name=APPLICATION_NAME
            ) as conn,
        ):
            self._client = client
            self._database = _Database(conn)
            try:
                yield
            finally:
                await self._clean_up()
                await self._database.close()

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None
        return self._client

    @property
    def database(self) -> _Database:
        assert self._database is not None
        return self._database

    async def register(self, count: int) -> None:
        run = uuid.uuid4().hex[:8]

        async def one(index: int) -> str:
            response = await self.client.post(
                "/agents", json={"name": f"bench-hb-{run}-{index}", "targets": ["emulator"]}
            )
            response.raise_for_status()
            return str(response.json()["id"])

        self.agent_ids = await _gather_bounded((one(i) for i in range(count)), CONNECTIONS // 2)

    async def claim(self, count: int) -> None:
        """`count` agents claim a group each: one job per group is submitted for them first."""
        run = uuid.uuid4().hex[:8]
        for start in range(0, count, SUBMIT_CHUNK):
            body = [
                {"org_id": "bench-heartbeats", "app_version_id": f"hb-{run}-{i}", "test_path": "tests/idle.spec.ts"}
                for i in range(start, min(count, start + SUBMIT_CHUNK))
            ]
            response = await self.client.post("/jobs", json=body)
            response.raise_for_status()
            self.job_ids += [job["id"] for job in response.json()]

        async def one(agent_id: str) -> None:
            response = await self.client.post(f"/agents/{agent_id}/claim", json={})
            response.raise_for_status()
            if response.status_code == 200:
                body = response.json()
                self.claims[agent_id] = {"group_id": body["group_id"], "token": body["token"]}
                self.lease_seconds = min(self.lease_seconds, float(body["lease_seconds"]))

        await _gather_bounded((one(a) for a in self.agent_ids[:count]), 10)

    def holder_for_explain(self) -> tuple[str, list[dict[str, str]]]:
        for agent_id, claim in self.claims.items():
            return agent_id, [claim]
        return self.agent_ids[0], []

    async def meter(self, seconds: float, server_pid: int | None, beating: bool = False) -> _Window:
        """CPU and WAL over `seconds`, beating or idle. The database's processes are sampled throughout:
        a pooled connection may come and go meanwhile."""
        cpu = PostgresCpu(self.database.processes)
        server_start = cpu_of(server_pid)
        wal = await _WalReader.start(self.database)
        started = time.perf_counter()
        await cpu.sample()
        tasks = [asyncio.create_task(cpu.keep_sampling()), asyncio.create_task(wal.keep_reading())]
        try:
            if beating:
                deadline = time.perf_counter() + seconds
                await asyncio.gather(*(self._beat(a, deadline) for a in self.agent_ids))
            else:
                await asyncio.sleep(seconds)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await cpu.sample()
        wall = time.perf_counter() - started
        server_end = cpu_of(server_pid)
        await wal.read()
        server_cpu = None if server_start is None or server_end is None else server_end - server_start
        return _Window(wall, server_cpu, cpu.total("backend"), cpu.total("background"), wal.summary())

    async def _beat(self, agent_id: str, deadline: float) -> None:
        body = {"claims": [self.claims[agent_id]] if agent_id in self.claims else []}
        await asyncio.sleep(min(self.rng.uniform(0, self.interval), max(0.0, deadline - time.perf_counter())))
        while (started := time.perf_counter()) < deadline:
            try:
                response = await self.client.put(f"/agents/{agent_id}/heartbeat", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code == 200:
                    self.latencies_ms.append(elapsed)
                    self.lost += len(response.json()["lost"])
                else:
                    self.errors += 1
            except httpx.HTTPError:
                self.errors += 1
            pause = self.interval * self.rng.uniform(1 - self.jitter, 1 + self.jitter)
            await asyncio.sleep(max(0.0, min(started + pause, deadline) - time.perf_counter()))

    async def _clean_up(self) -> None:
        """Deregister every agent (claims go back to the queue), then cancel the jobs submitted for them."""

        async def call(method: str, path: str) -> None:
            with contextlib.suppress(httpx.HTTPError):
                await self.client.request(method, path)

        await _gather_bounded((call("DELETE", f"/agents/{a}") for a in self.agent_ids), CONNECTIONS // 2)
        await _gather_bounded((call("DELETE", f"/jobs/{j}") for j in self.job_ids), CONNECTIONS // 2)


async def _gather_bounded(calls: Iterable[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def bounded(call: Any) -> Any:
        async with semaphore:
            return await call

    return list(await asyncio.gather(*(bounded(c) for c in calls)))


@dataclass
class _WalReader:
    """This database's share of the WAL from a starting point, read back in steps of WAL_READ_EVERY while it
    is written; the cluster's bytes too. Without pg_walinspect only the cluster's are known."""

    database: _Database
    position: str
    identity: tuple[int, int] | None
    cluster_bytes: int = 0
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WAL_KEYS, 0))
    carried: list[str] = field(default_factory=list)
    complete: bool = True

    @classmethod
    async def start(cls, database: _Database) -> _WalReader:
        identity = await database.wal_identity() if await database.walinspect_available() else None
        return cls(database, await database.wal_lsn(), identity)

    async def keep_reading(self) -> None:
        while True:
            await asyncio.sleep(WAL_READ_EVERY)
            await self.read()

    async def read(self) -> None:
        end = await self.database.wal_lsn()
        diff = await self.database.lsn_diff(end, self.position)
        if diff <= 0:
            return
        self.cluster_bytes += diff
        if self.identity is not None and self.complete:
            database, agents = self.identity
            params = {
                "start": self.position,
                "end": end,
                "carried": self.carried,
                "database": f"%/{database}/%",
                "agents": f"%/{database}/{agents} %",
            }
            try:
                row = (await self.database.rows(_WAL_OF_DATABASE, params))[0]
            except psycopg.Error:  # recycled already: what was read stands, rates are not given
                self.complete = False
            else:
                for key in WAL_KEYS:
                    self.sums[key] += int(row[key])
                self.carried = list(row["beat_xids"] or [])
        self.position = end

    def summary(self) -> dict[str, Any]:
        known = self.identity is not None
        return {
            "cluster_bytes": self.cluster_bytes,
            "complete": known and self.complete,
            **{key: self.sums[key] if known else None for key in WAL_KEYS},
        }


class _Database:
    """The benchmark's own connection: statistics, WAL position, PostgreSQL's processes."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.processes = PostgresProcesses(conn)
        self.walinspect: bool | None = None
        self.created_walinspect = False

    async def rows(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(query, params)
            return await cursor.fetchall()

    async def lsn_diff(self, end: str, start: str) -> int:
        rows = await self.rows(
            "SELECT pg_wal_lsn_diff(CAST(%(end)s AS pg_lsn), CAST(%(start)s AS pg_lsn)) AS b",
            {"start": start, "end": end},
        )
        return int(rows[0]["b"])

    async def wal_lsn(self) -> str:
        """The flushed end of the WAL (every committed beat is in it: commits are synchronous)."""
        return str((await self.rows("SELECT CAST(pg_current_wal_flush_lsn() AS text) AS lsn"))[0]["lsn"])

    async def wal_identity(self) -> tuple[int, int]:
        """This database's oid and the file node of `agents`: how WAL block references name them."""
        rows = await self.rows(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, "
            "pg_relation_filenode('agents') AS agents"
        )
        return int(rows[0]["db"]), int(rows[0]["agents"])

    async def walinspect_available(self) -> bool:
        if self.walinspect is None:
            try:
                installed = await self.rows("SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'")
                if not installed:
                    await self.conn.execute("CREATE EXTENSION pg_walinspect")
                    self.created_walinspect = True
                self.walinspect = True
            except psycopg.Error:
                self.walinspect = False
        return self.walinspect

    async def close(self) -> None:
        """Drop what was installed for the measurement."""
        if self.created_walinspect:
            with contextlib.suppress(psycopg.Error):
                await self.conn.execute("DROP EXTENSION pg_walinspect")

    async def snapshot(self, settle_until_updates: int | None = None, settle_seconds: float = 12.0) -> dict[str, Any]:
        """Table statistics and sizes. A backend flushes its statistics at most once a second while
        busy and within 10 s of going idle (PGSTAT_IDLE_INTERVAL): with `settle_until_updates`, wait (up to
        `settle_seconds`) until `agents` shows that many updates, one per heartbeat."""
        deadline = time.monotonic() + settle_seconds
        while True:
            tables = {
                row["relname"]: row
                for row in await self.rows(
                    "SELECT relname, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup, "
                    "pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables WHERE relname = ANY(%(t)s)",
                    {"t": list(TABLES)},
                )
            }
            updates = tables["agents"]["n_tup_upd"]
            if settle_until_updates is None or updates >= settle_until_updates or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        facts = (
            await self.rows(
                "SELECT current_setting('server_version') AS server_version, "
                "current_setting('autovacuum') AS autovacuum, current_setting('fsync') AS fsync, "
                "current_setting('synchronous_commit') AS synchronous_commit, "
                "(SELECT version_num FROM alembic_version) AS schema_revision, "
                "(SELECT reloptions FROM pg_class WHERE oid = 'agents'::regclass) AS agents_options"
            )
        )[0]
        return {"tables": tables, "facts": facts}

    async def heartbeat_wal(self, holder: tuple[str, list[dict[str, str]]]) -> dict[str, Any]:
        """The statement of one heartbeat (claims.heartbeat) under EXPLAIN (ANALYZE, WAL, BUFFERS), rolled back:
        the WAL records and bytes a beat writes (besides its commit record), and the pages it touches."""
        agent_id, held = holder
        params = {
            "agent_id": uuid.UUID(agent_id),
            "group_ids": [uuid.UUID(c["group_id"]) for c in held],
            "tokens": [uuid.UUID(c["token"]) for c in held],
            "lease_seconds": 30.0,
        }
        async with self.conn.transaction(force_rollback=True):
            # Twice: the first change to a page after a checkpoint logs the whole page (a full-page image, once per
            # page per checkpoint); the second shows what every other beat writes.
            await self.rows(f"EXPLAIN (ANALYZE, FORMAT JSON) {P.heartbeat}", params)
            rows = await self.rows(f"EXPLAIN (ANALYZE, WAL, BUFFERS, FORMAT JSON) {P.heartbeat}", params)
        plan = rows[0]["QUERY PLAN"][0]
        top = plan["Plan"]
        return {
            "heartbeat": {
                "wal_records": int(top.get("WAL Records", 0)),
                "wal_bytes": int(top.get("WAL Bytes", 0)),
                "wal_fpi": int(top.get("WAL FPI", 0)),
                "buffers": int(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)),
                "execution_ms": round(float(plan["Execution Time"]), 3),
            }
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heartbeats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a scratch database (agents are added to it)")
    parser.add_argument("--api-url", help="a qgjob server on that database (default: start one)")
    parser.add_argument("--server-pid", type=int, help="that server's pid, for its CPU time")
    parser.add_argument("--token", help="an admin token, if the server needs one")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between an agent's beats")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of beating measured")
    parser.add_argument("--holding", type=float, default=0.1, help="share of agents holding a claim")
    parser.add_argument("--idle-seconds", type=float, default=12.0, help="idle window measured first")
    args = parser.parse_args(argv)
    with target_for(args.database_url, args.api_url, args.token, args.server_pid) as target:
        result = asyncio.run(
            measure_heartbeats(
                target,
                args.agents,
                args.interval,
                args.duration,
                holding=args.holding,
                server_pid=target.server_pid,
                idle_seconds=args.idle_seconds,
            )
        )
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
