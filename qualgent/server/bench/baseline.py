"""Raw PostgreSQL baselines, measured on the same database in the same run as qualgent's figures.

- claim+complete: the classic single-row `SKIP LOCKED` queue, written by hand with psycopg (no HTTP, no
  ORM): `workers` connections each take the oldest pending row and mark it done, one row per transaction.
  Measured both as one transaction per job (claim and complete together: the ceiling of a one-row queue)
  and as two (claim, commit, complete, commit: what a queue whose work happens outside the transaction
  does). Ratios use the first, the harder to beat.
- insert: a plain multi-row INSERT (one statement, one transaction) of the rows a bulk submit makes into
  qualgent's own jobs table, its indexes and foreign keys included: the price of storing those rows, which
  qualgent's overhead is measured against.

Everything lives in a schema of its own, dropped at the end."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg

SCHEMA = "qualgent_bench_raw"

_CLAIM_AND_COMPLETE = f"""
UPDATE {SCHEMA}.queue SET status = 'done', finished_at = now()
WHERE id = (
    SELECT id FROM {SCHEMA}.queue WHERE status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id"""

_CLAIM = f"""
UPDATE {SCHEMA}.queue SET status = 'running', started_at = now()
WHERE id = (
    SELECT id FROM {SCHEMA}.queue WHERE status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id"""

_COMPLETE = f"UPDATE {SCHEMA}.queue SET status = 'done', finished_at = now() WHERE id = %s"


async def _setup(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    await conn.execute(
        f"""CREATE TABLE {SCHEMA}.queue (
            id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'pending', payload text,
            created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, finished_at timestamptz)"""
    )
    await conn.execute(f"CREATE INDEX ON {SCHEMA}.queue (id) WHERE status = 'pending'")


async def drop(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


async def claim_complete(database_url: str, jobs: int, workers: int, two_transactions: bool = False) -> float:
    """Jobs per second through a hand-written single-row SKIP LOCKED queue."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await _setup(conn)
        await conn.execute(
            f"INSERT INTO {SCHEMA}.queue (payload) SELECT 'tests/' || g || '.spec.ts' FROM generate_series(1, %s) g",
            (jobs,),
        )
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.queue")
    connections = [await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(workers)]
    done = 0

    async def work(conn: psycopg.AsyncConnection[Any]) -> None:
        nonlocal done
        while True:
            if two_transactions:
                row = await (await conn.execute(_CLAIM, prepare=True)).fetchone()
                if row is None:
                    return
                await conn.execute(_COMPLETE, (row[0],), prepare=True)
            else:
                row = await (await conn.execute(_CLAIM_AND_COMPLETE, prepare=True)).fetchone()
                if row is None:
                    return
            done += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(work(c) for c in connections))
        elapsed = time.perf_counter() - started
    finally:
        for conn in connections:
            await conn.close()
    if done != jobs:
        raise RuntimeError(f"raw queue baseline processed {done} of {jobs} jobs")
    return done / elapsed


_INSERT_JOBS = """
INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, max_attempts, attempt_budget, group_id)
SELECT id, org_id, app_version_id, target, test_path, CAST(priority AS job_priority), 3, 3, %s
FROM unnest(
    CAST(%s AS uuid[]), CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]),
    CAST(%s AS text[])
) AS j (id, org_id, app_version_id, target, test_path, priority)"""


async def insert_into_jobs(database_url: str, rows: int, repeat: int = 3) -> float:
    """Rows per second of one multi-row INSERT of the same rows into qualgent's own jobs table (its indexes and
    foreign keys included), bypassing qualgent: best of `repeat`; the rows are deleted afterwards."""
    best = 0.0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO orgs (id) VALUES ('bench-raw') ON CONFLICT DO NOTHING")
        group = await (
            await conn.execute(
                """INSERT INTO job_groups (org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                                           available_at)
                   VALUES ('bench-raw', 'raw', 'emulator', 'done', 'standard', 'medium', now(), now()) RETURNING id"""
            )
        ).fetchone()
        assert group is not None
        for round_ in range(repeat):
            columns = (
                group[0],
                [uuid.uuid4() for _ in range(rows)],
                ["bench-raw"] * rows,
                [f"v{round_}-{i // 20}" for i in range(rows)],
                ["emulator"] * rows,
                [f"tests/{i}.spec.ts" for i in range(rows)],
                ["medium"] * rows,
            )
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(_INSERT_JOBS, columns)
            best = max(best, rows / (time.perf_counter() - started))
        await conn.execute("DELETE FROM jobs WHERE org_id = 'bench-raw'")
        await conn.execute("DELETE FROM job_groups WHERE org_id = 'bench-raw'")
        await conn.execute("DELETE FROM orgs WHERE id = 'bench-raw'")
    return best
