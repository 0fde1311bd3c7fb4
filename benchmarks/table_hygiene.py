"""How many of the hot path's updates are HOT (heap-only: no index entry written), table by table.

    .venv/bin/python -m benchmarks.table_hygiene [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--agents 20] [--groups 200] [--jobs-per-group 10] [--heartbeats-per-job 3] [--alter FILE.sql] [--keep]

It creates a database of its own (qualgent_hygiene_<pid>), migrated (then --alter's SQL run, to try a storage
setting out), and plays the agent protocol through the queue's own functions, as the API's routes call them:
--agents agents, --groups groups of --jobs-per-group jobs submitted at once; each group claimed, each job started
and finished in a report of its own, --heartbeats-per-job heartbeats while it runs; one job in ten first fails with
an infrastructure error and is retried after its backoff. Then it prints, per table, updates, HOT updates and
their share (pg_stat_user_tables), the size of the table and of its indexes, and its storage parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psycopg

from qualgent.domain.types import Outcome
from qualgent.server.bench.run import scratch_database
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import agents, claims, jobs
from qualgent.server.queue.claims import Result, Started
from qualgent.server.queue.core import Queue
from qualgent.server.queue.jobs import JobSpec
from qualgent.server.settings import Settings

TABLES = ("jobs", "job_groups", "agents", "attempts")
INFRA = Result(exit_code=3, outcome=Outcome.INFRA_ERROR, error="device lost")
PASSED = Result(exit_code=0, duration_ms=1000, output_tail="ok")


async def play(url: str, agent_count: int, groups: int, per_group: int, heartbeats: int) -> int:
    """The agent protocol through the queue's own functions (what the API's routes call), one agent at a time.
    Returns how many runs failed with an infrastructure error (each job so failed runs again)."""
    async with Database(url, size=2) as db:
        q = Queue(db, Settings())
        specs = [
            JobSpec(f"org{g % 7}", f"v{g}", f"tests/t{i}.spec.ts") for g in range(groups) for i in range(per_group)
        ]
        await jobs.submit(q, specs)
        fleet = [(await agents.register(q, f"a{i}", ["emulator"])).id for i in range(agent_count)]
        ran, turn, infra = 0, 0, 0
        while await db.value(UNFINISHED):
            agent_id = fleet[turn % agent_count]
            turn += 1
            claim = await claims.claim(q, agent_id, ["emulator"])
            if claim is None:  # only jobs in their retry backoff are left
                await asyncio.sleep(0.2)
                continue
            for job in claim.jobs:  # each job started and finished in reports of their own, as a slow suite's are
                await claims.report_progress(q, agent_id, claim.group_id, claim.token, [Started(job.id)], [])
                for _ in range(heartbeats):
                    await claims.heartbeat(q, agent_id, {claim.group_id: claim.token})
                ran += 1
                result = INFRA if ran % 10 == 0 and job.attempts == 0 else PASSED
                infra += result is INFRA
                await claims.report_progress(q, agent_id, claim.group_id, claim.token, [], [(job.id, result)])
    return infra


UNFINISHED = "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('pending', 'running'))"


def measure(url: str, agent_count: int, groups: int, per_group: int, heartbeats: int) -> tuple[int, dict[str, Any]]:
    """Runs that failed with an infrastructure error, and the tables' figures."""
    infra = asyncio.run(play(url, agent_count, groups, per_group, heartbeats))  # its pool closed: backends flushed
    time.sleep(1.5)
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            """SELECT s.relname, s.n_tup_upd, s.n_tup_hot_upd, pg_relation_size(s.relid), pg_indexes_size(s.relid),
                      c.reloptions
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.relname = ANY(%s) ORDER BY s.relname""",
            [list(TABLES)],
        ).fetchall()
    return infra, {
        name: {"updates": upd, "hot": hot, "bytes": size, "index_bytes": index_size, "options": opts}
        for name, upd, hot, size, index_size, opts in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default=os.environ.get("QUALGENT_TEST_DATABASE_URL"), required=False)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--jobs-per-group", type=int, default=10)
    parser.add_argument("--heartbeats-per-job", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--alter", help="a SQL file to run after migrating (to try a setting out)")
    args = parser.parse_args()
    if not args.server_url:
        parser.error("--server-url or QUALGENT_TEST_DATABASE_URL is required")
    with scratch_database(args.server_url, f"qualgent_hygiene_{os.getpid()}", keep=args.keep) as url:
        if args.alter:
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                conn.execute(Path(args.alter).read_text())
        began = time.perf_counter()
        infra, figures = measure(url, args.agents, args.groups, args.jobs_per_group, args.heartbeats_per_job)
        elapsed = time.perf_counter() - began
        shape = f"{args.groups} groups x {args.jobs_per_group} jobs ({infra} retried after an infra error)"
        print(f"{shape} in {elapsed:.1f}s")
        print(f"{'table':<12}{'updates':>10}{'HOT':>10}{'HOT %':>8}{'heap kB':>9}{'index kB':>10}  options")
        for table, f in figures.items():
            share = 100 * f["hot"] / f["updates"] if f["updates"] else 0.0
            print(
                f"{table:<12}{f['updates']:>10}{f['hot']:>10}{share:>7.1f}%{f['bytes'] // 1024:>9}"
                f"{f['index_bytes'] // 1024:>10}  {f['options']}"
            )


if __name__ == "__main__":
    main()
