"""How fast retention prunes, and what the reporting views cost before and after.

    .venv/bin/python -m benchmarks.retention [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--jobs 300000] [--older-than 30] [--batch-size 1000] [--keep]

It creates a database of its own (qualgent_retention_<pid>), fills it with benchmarks/reporting.py's
history (50 orgs, 90 days, groups of 15, retries, re-runs, cancels, 10,000 live jobs), VACUUM ANALYZE, then:
times reporting.org_success_rates, flaky_tests and app_versions over all time; counts what a prune at
--older-than days would delete (the dry run); prunes it (timed: jobs per second, seconds per batch); VACUUM
ANALYZE; times the views again, says whether their totals are unchanged and how far the estimated medians
are from the exact ones. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import time
from typing import Any

import psycopg

from benchmarks.reporting import FILL
from qualgent.server.bench.run import scratch_database
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import retention

VIEWS = {
    "org_success_rates": ("org_id", "finished", "completed", "failed", "cancelled", "success_rate"),
    "flaky_tests": ("org_id", "test_path", "runs", "failures", "passes_after_failure"),
    "app_versions": ("org_id", "app_version_id", "tests", "finished", "passed", "failed", "installs"),
}


ESTIMATED = ("median_duration_seconds", "median_queue_wait_seconds", "p95_queue_wait_seconds")


def medians(url: str) -> dict[str, tuple[float, ...]]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(f"SELECT org_id, {', '.join(ESTIMATED)} FROM reporting.org_success_rates").fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def views(url: str) -> dict[str, tuple[float, set[tuple[Any, ...]]]]:
    """Each view over all time: seconds (fetching every row, after a warm-up run) and its exact columns."""
    seen: dict[str, tuple[float, set[tuple[Any, ...]]]] = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET jit = off")
        conn.execute("SET work_mem = '64MB'")  # as qgjob report runs them (REPORT_WORK_MEM)
        for view, columns in VIEWS.items():
            query = f"SELECT {', '.join(columns)} FROM reporting.{view}"
            conn.execute(query).fetchall()
            began = time.perf_counter()
            rows = conn.execute(query).fetchall()
            seen[view] = (time.perf_counter() - began, set(rows))
    return seen


async def _prune(url: str, days: float, batch: int, dry_run: bool) -> retention.PruneReport:
    async with Database(url, size=2) as db:
        return await retention.prune(db, dt.timedelta(days=days), dry_run=dry_run, batch_size=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default=os.environ.get("QUALGENT_TEST_DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=300_000)
    parser.add_argument("--older-than", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=retention.BATCH_SIZE)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not args.server_url:
        parser.error("--server-url or QUALGENT_TEST_DATABASE_URL is required")
    with scratch_database(args.server_url, f"qualgent_retention_{os.getpid()}", keep=args.keep) as url:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            fill = FILL.replace("{jobs}", str(args.jobs)).replace("{groups}", str(-(-args.jobs // 15)))
            conn.execute(fill)  # several statements, no parameters
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        print(f"{args.jobs} finished jobs over 90 days (+10,080 live), database {size[0] if size else '?'}")
        before, exact = views(url), medians(url)
        dry = asyncio.run(_prune(url, args.older_than, args.batch_size, dry_run=True))
        print(f"dry run ({dry.seconds:.2f}s): {dry.jobs} jobs, {dry.attempts} attempts, {dry.groups} groups")
        done = asyncio.run(_prune(url, args.older_than, args.batch_size, dry_run=False))
        print(
            f"pruned {done.jobs} jobs, {done.attempts} attempts, {done.groups} groups in {done.batches} batches of "
            f"{args.batch_size}: {done.seconds:.1f}s, {done.jobs / done.seconds:,.0f} jobs/s, "
            f"{1000 * done.seconds / max(done.batches, 1):.0f} ms per batch"
        )
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
            rollups = conn.execute(
                "SELECT string_agg(relname || ' ' || n_live_tup, ', ' ORDER BY relname) FROM pg_stat_user_tables "
                "WHERE schemaname = 'reporting'"
            ).fetchone()
        print(f"after: database {size[0] if size else '?'}; rollup rows: {rollups[0] if rollups else '?'}")
        after, estimated = views(url), medians(url)
        for i, column in enumerate(ESTIMATED):
            errors = [abs(estimated[org][i] / exact[org][i] - 1) for org in exact if exact[org][i]]
            print(f"{column}: estimated within {100 * max(errors):.1f}% (mean {100 * sum(errors) / len(errors):.1f}%)")
        print(f"{'view (all orgs, all time)':<28}{'before s':>10}{'after s':>10}  rows  totals unchanged")
        for view in VIEWS:
            (t0, rows0), (t1, rows1) = before[view], after[view]
            print(f"{view:<28}{t0:>10.3f}{t1:>10.3f}  {len(rows1):>5}  {rows0 == rows1}")


if __name__ == "__main__":
    main()
