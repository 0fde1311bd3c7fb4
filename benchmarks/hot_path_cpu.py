"""PostgreSQL's and the server's CPU per job on the agents' hot path, one agent, serial: the harness behind the
schema experiments of docs/performance.md (a HOT-friendly jobs table, json for jsonb).

    .venv/bin/python -m benchmarks.hot_path_cpu [--server-url postgresql://...] [--variant FILE.sql]
        [--jobs 10000] [--group-size 20] [--rounds 2]

It makes the bench's scratch database (qualgent.server.bench.run.scratch_database) on --server-url's server (default:
the
embedded PostgreSQL, started and stopped here), runs --variant's SQL on it if given (DDL to try: other indexes,
fillfactor, redefined functions), submits --jobs jobs in groups of --group-size, and drains them with one agent
calling the queue functions the server calls (`claims.claim`, then `claims.report_progress` with every job started
and passed and the next group claimed in the same statement), no HTTP. It prints, per round, the CPU of the
database's backends (from /proc, so on this machine only) and of this process per job. Serial and without HTTP,
two runs of the same code agree within a few percent where the end-to-end bench moves by 20%: compare variants
round by round. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

import psycopg

from benchmarks.postgres import cpu_of
from qualgent.server.bench.run import scratch_database
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import agents, claims
from qualgent.server.queue import jobs as queue_jobs
from qualgent.server.queue.claims import Result, Started
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings

PASSED = Result(0, 5)


def backend_cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these processes so far (those gone count nothing)."""
    return sum(cpu_of(pid) or 0.0 for pid in pids)


async def drain(url: str, jobs: int, group_size: int, tag: str) -> str:
    db = Database(url)
    await db.open()
    q = Queue(db, Settings(database_url=url, lease_seconds=30))
    try:
        agent_id = (await agents.register(q, f"hot-path-{tag}", ["emulator"])).id
        for first in range(0, jobs, 10_000):
            specs = [
                queue_jobs.JobSpec("hot-path", f"{tag}-build-{i // group_size}", f"tests/{i % group_size}.spec.ts")
                for i in range(first, min(jobs, first + 10_000))
            ]
            await queue_jobs.submit(q, specs)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for table in ("orgs", "job_groups", "jobs", "attempts", "agents"):
                conn.execute(f"VACUUM ANALYZE {table}")
        got = await claims.claim(q, agent_id, ["emulator"])
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
        done = 0
        backends, python, wall = backend_cpu_seconds(pids), time.process_time(), time.perf_counter()
        while got is not None:
            ids = [job.id for job in got.jobs]
            report = await claims.report_progress(
                q,
                agent_id,
                got.group_id,
                got.token,
                [Started(job_id, 1) for job_id in ids],
                [(job_id, PASSED) for job_id in ids],
                ["emulator"],
            )
            done += len(ids)
            got = report.next_claim
        backends = backend_cpu_seconds(pids) - backends
        python, wall = time.process_time() - python, time.perf_counter() - wall
        return (
            f"{done} jobs: PostgreSQL {backends / done * 1e6:.0f} us/job, the server's Python "
            f"{python / done * 1e6:.0f} us/job, wall {wall / done * 1e6:.0f} us/job"
        )
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", help="a PostgreSQL server (default: the embedded one)")
    parser.add_argument("--variant", type=Path, help="SQL to run on the migrated database before measuring")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--group-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    embedded = None
    server_url = args.server_url
    if server_url is None:
        from qualgent.server.db.embedded import EmbeddedPostgres
        from qualgent.server.settings import Settings

        embedded = EmbeddedPostgres(Settings().data_dir)
        server_url = embedded.start()
    try:
        with scratch_database(server_url) as url:
            if args.variant is not None:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(args.variant.read_text())
            for round_ in range(1, args.rounds + 1):
                tag = f"r{round_}-{uuid.uuid4().hex[:6]}"
                print(f"round {round_}: {asyncio.run(drain(url, args.jobs, args.group_size, tag))}", flush=True)
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
