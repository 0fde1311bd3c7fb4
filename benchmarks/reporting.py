"""Time the reporting views, and the queue's state queries, on a database of a million finished jobs.

    .venv/bin/python -m benchmarks.reporting [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--jobs 1000000] [--runs 3] [--keep]

It creates a database of its own on that server (qualgent_bench_<pid>), migrates it with the real
migrations, fills it with generate_series (50 orgs, 90 days of history: groups of 15 jobs, 85% passed,
10% failed, 5% cancelled, 1 in 33 jobs retried after an infrastructure error, 1 in 50 re-run after a
failure, plus 10,000 jobs pending in 700 groups and 20 groups running), runs VACUUM ANALYZE, then times
each query: one warm-up, then the median of --runs, wall clock including fetching every row. The reports
run twice, with the server's work_mem and with the one `qgjob report` sets (REPORT_WORK_MEM). The database
is dropped at the end unless --keep. Not collected by pytest (no test_ prefix): it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from qualgent.server.bench.run import scratch_database
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import stats
from qualgent.server.queue.core import Queue
from qualgent.server.reporting.queries import REPORT_WORK_MEM
from qualgent.server.settings import Settings

FILL = """
SELECT setseed(0.42);
INSERT INTO orgs (id, tier)
SELECT 'org' || lpad(i::text, 3, '0'), (ARRAY['premium', 'enterprise', 'standard'])[1 + i % 3]::org_tier
FROM generate_series(1, 50) AS i;
INSERT INTO agents (id, name, targets, status)
SELECT md5('agent' || i)::uuid, 'agent-' || i, ARRAY[(ARRAY['emulator', 'device', 'browserstack'])[1 + i % 3]],
       'idle'
FROM generate_series(1, 60) AS i;
-- finished groups of 15 jobs over 90 days; group g belongs to org 1 + g % 50
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                        available_at, job_count, agent_id, claimed_at, finished_at, created_at)
SELECT md5('group' || g)::uuid, 'org' || lpad((1 + g % 50)::text, 3, '0'), 'v' || (g / 50),
       (ARRAY['emulator', 'device', 'browserstack'])[1 + (g / 7) % 3], 'done',
       (ARRAY['premium', 'enterprise', 'standard'])[1 + (1 + g % 50) % 3]::org_tier, 'medium',
       t - interval '2 minutes', t - interval '2 minutes', 15, md5('agent' || (1 + g % 60))::uuid,
       t, t + interval '20 minutes', t - interval '2 minutes'
FROM generate_series(0, {groups} - 1) AS g,
     LATERAL (SELECT now() - interval '90 days' + g * (interval '90 days' / {groups}) AS t) AS at;
CREATE TEMP TABLE fill AS
SELECT k, k / 15 AS g, md5('job' || k)::uuid AS id, gr.org_id, gr.app_version_id, gr.target, gr.claimed_at,
       gr.agent_id,
       'tests/' || (ARRAY['login', 'checkout', 'search', 'profile', 'cart', 'onboarding', 'settings',
                          'payments'])[1 + k % 8] || '/case' || (k % 37) || '.spec.ts' AS test_path,
       random() AS r, (random() * 600)::int AS wait_s, 20 + (random() * 100)::int AS run_s,
       k % 33 = 0 AS infra_first, k % 50 = 1 AS rerun
FROM generate_series(0, {jobs} - 1) AS k
JOIN job_groups gr ON gr.id = md5('group' || (k / 15))::uuid;
-- started = the last attempt's start; the first attempt of a job started twice began 200 s earlier
INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, status, group_id, agent_id, attempts,
                  max_attempts, run_after, exit_code, duration_ms, created_at, updated_at, started_at, finished_at)
SELECT f.id, f.org_id, f.app_version_id, f.target, f.test_path,
       (ARRAY['high', 'medium', 'low'])[1 + f.k % 3]::job_priority,
       CASE WHEN f.r < 0.85 THEN 'completed' WHEN f.r < 0.95 THEN 'failed' ELSE 'cancelled' END,
       md5('group' || f.g)::uuid, f.agent_id,
       CASE WHEN f.r >= 0.95 THEN 0 WHEN f.infra_first OR f.rerun THEN 2 ELSE 1 END, 3,
       f.claimed_at - make_interval(secs => f.wait_s),
       CASE WHEN f.r < 0.85 THEN 0 WHEN f.r < 0.95 THEN 1 END,
       CASE WHEN f.r < 0.95 THEN f.run_s * 1000 END,
       f.claimed_at - make_interval(secs => f.wait_s), s.started + make_interval(secs => f.run_s),
       CASE WHEN f.r < 0.95 THEN s.started END, s.started + make_interval(secs => f.run_s)
FROM fill f
CROSS JOIN LATERAL (SELECT f.claimed_at + make_interval(secs => 230 + (f.k % 15) * 80) AS started) AS s;
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms)
SELECT f.id, 1, f.agent_id, md5('group' || f.g)::uuid, s.started, s.started + make_interval(secs => f.run_s),
       CASE WHEN f.infra_first THEN 'infra_error' WHEN f.rerun OR f.r >= 0.85 THEN 'test_failed' ELSE 'passed' END,
       CASE WHEN f.infra_first THEN 3 WHEN f.rerun OR f.r >= 0.85 THEN 1 ELSE 0 END,
       f.run_s * 1000
FROM fill f
CROSS JOIN LATERAL (
    SELECT f.claimed_at + make_interval(secs => 230 + (f.k % 15) * 80
                                                - CASE WHEN f.infra_first OR f.rerun THEN 200 ELSE 0 END) AS started
) AS s
WHERE f.r < 0.95;
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms)
SELECT f.id, 2, f.agent_id, md5('group' || f.g)::uuid, s.started, s.started + make_interval(secs => f.run_s),
       CASE WHEN f.r < 0.85 THEN 'passed' ELSE 'test_failed' END, CASE WHEN f.r < 0.85 THEN 0 ELSE 1 END,
       f.run_s * 1000
FROM fill f
CROSS JOIN LATERAL (SELECT f.claimed_at + make_interval(secs => 230 + (f.k % 15) * 80) AS started) AS s
WHERE f.r < 0.95 AND (f.infra_first OR f.rerun);
-- the live queue: 700 pending groups with 10,000 pending jobs, 20 running groups
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                        available_at, job_count, agent_id, claimed_at, lease_expires_at)
SELECT md5('live' || g)::uuid, 'org' || lpad((1 + g % 50)::text, 3, '0'), 'live' || g,
       (ARRAY['emulator', 'device', 'browserstack'])[1 + g % 3],
       CASE WHEN g < 20 THEN 'running' ELSE 'pending' END,
       (ARRAY['premium', 'enterprise', 'standard'])[1 + (1 + g % 50) % 3]::org_tier, 'medium',
       now() - interval '5 minutes', now() - interval '5 minutes', 14,
       CASE WHEN g < 20 THEN md5('agent' || (1 + g))::uuid END,
       CASE WHEN g < 20 THEN now() END, CASE WHEN g < 20 THEN now() + interval '30 seconds' END
FROM generate_series(0, 719) AS g;
INSERT INTO jobs (org_id, app_version_id, target, test_path, priority, status, group_id, created_at)
SELECT gr.org_id, gr.app_version_id, gr.target, 'tests/live' || i || '.spec.ts',
       (ARRAY['high', 'medium', 'low'])[1 + i % 3]::job_priority,
       CASE WHEN gr.status = 'running' AND i % 14 = 0 THEN 'running' ELSE 'pending' END, gr.id,
       now() - make_interval(secs => i % 300)
FROM job_groups gr, generate_series(0, 13) AS i
WHERE gr.app_version_id LIKE 'live%';
"""

WINDOW = "now() - interval '7 days'"
REPORTS = {
    "org_success_rates": ("reporting.org_success_rates", "reporting.org_success_rates_between"),
    "flaky_tests": ("reporting.flaky_tests", "reporting.flaky_tests_between"),
    "app_versions": ("reporting.app_versions", "reporting.app_versions_between"),
}


def fetch_all(conn: psycopg.Connection[Any], query: str) -> list[Any]:
    return conn.execute(query).fetchall()


def timed(run: Callable[[], Any], runs: int) -> tuple[float, int]:
    """Median seconds over `runs` after one warm-up, and how many rows the last run returned."""
    rows = len(run())
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(run())
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def bench_reports(url: str, runs: int) -> list[tuple[str, str, float, float, int]]:
    results = []
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET jit = off")  # JIT compiles for ~50-100 ms on these plans and buys nothing
        default_work_mem = conn.execute("SHOW work_mem").fetchone()[0]  # type: ignore[index]
        for name, (view, function) in REPORTS.items():
            queries = {
                "all orgs, all time": f"SELECT * FROM {view}",
                "one org, all time": f"SELECT * FROM {view} WHERE org_id = 'org007'",
                "all orgs, last 7 days": f"SELECT * FROM {function}({WINDOW})",
                "one org, last 7 days": f"SELECT * FROM {function}({WINDOW}) WHERE org_id = 'org007'",
            }
            for label, query in queries.items():
                timings = []
                for work_mem in (default_work_mem, REPORT_WORK_MEM):
                    conn.execute(f"SET work_mem = '{work_mem}'")
                    seconds, rows = timed(functools.partial(fetch_all, conn, query), runs)
                    timings.append(seconds)
                results.append((name, label, timings[0], timings[1], rows))
        conn.execute(f"SET work_mem = '{default_work_mem}'")
    return results


async def bench_state(url: str, runs: int) -> list[tuple[str, float]]:
    async with Database(url, size=1) as db:
        q = Queue(db, Settings(lease_seconds=30))
        out = []
        for label, call in (
            ("gauges (/metrics, health, monitoring)", lambda: stats.gauges(q)),
            ("queue status (/api/jobs/queue/status)", lambda: stats.queue_status(db)),
            ("scale recommendations", lambda: stats.scale_recommendations(q)),
        ):
            await call()
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            out.append((label, statistics.median(times)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the database for a look with psql.")
    args = parser.parse_args()

    name = f"qualgent_bench_{os.getpid()}"
    with scratch_database(args.server_url, name, keep=args.keep) as url:
        started = time.perf_counter()
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            fill = FILL.replace("{jobs}", str(args.jobs)).replace("{groups}", str(-(-args.jobs // 15)))
            conn.execute(fill)  # several statements, no parameters
            conn.execute("VACUUM ANALYZE")
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            work_mem = conn.execute("SHOW work_mem").fetchone()[0]  # type: ignore[index]
            shared = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
            counts = conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1 ORDER BY 1").fetchall()
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]  # type: ignore[index]
        print(f"database {name}: PostgreSQL {version}, shared_buffers {shared}, work_mem {work_mem}, size {size}")
        print(f"filled in {time.perf_counter() - started:.0f}s: " + ", ".join(f"{s} {n}" for s, n in counts))
        print()
        print(f"| view | query | seconds (work_mem {work_mem}) | seconds (work_mem {REPORT_WORK_MEM}) | rows |")
        print("|---|---|---:|---:|---:|")
        for view, label, default, more, rows in bench_reports(url, args.runs):
            print(f"| {view} | {label} | {default:.3f} | {more:.3f} | {rows} |")
        print()
        print("| queue state | seconds |")
        print("|---|---:|")
        for label, seconds in asyncio.run(bench_state(url, args.runs)):
            print(f"| {label} | {seconds:.4f} |")
        if args.keep:
            print(f"kept: {url}")


if __name__ == "__main__":
    main()
