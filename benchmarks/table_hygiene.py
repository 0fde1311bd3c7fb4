"""How many of the hot path's updates are HOT (heap-only: no index entry written), table by table.

    .venv/bin/python -m benchmarks.table_hygiene [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--revision head] [--agents 20] [--groups 200] [--jobs-per-group 10] [--heartbeats-per-job 3] [--keep]

It creates a database of its own (qualgent_hygiene_<pid>), migrates it to --revision (compare `0005`, the
schema before migration 0006, with `head`), then plays the agent protocol with the named statements of
qualgent/server/db/queries.sql, one transaction per request as the server runs them: --agents agents, --groups
groups of --jobs-per-group jobs submitted in bulk; each group claimed, each job started, --heartbeats-per-job
heartbeats while it runs (the heartbeat statement: the agent's row, the lease, cancelled jobs), the result
recorded; one job in ten first fails with an infrastructure error and is retried (finish_runs, requeue).
Then it prints, per table, updates, HOT updates and their share (pg_stat_user_tables), the size of the
table and of its indexes, and its storage parameters. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import os
import re
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from qualgent.server.db import migrate
from qualgent.server.db.engine import create_sync_engine, libpq_url
from qualgent.server.db.sql import P


class _AsText:
    """The named statements (psycopg's `%(name)s` style) as SQLAlchemy text, for this script's sync connection."""

    def __getattr__(self, name: str) -> Any:
        return text(re.sub(r"%\((\w+)\)s", r":\1", getattr(P, name)))


Q = _AsText()

TABLES = ("jobs", "job_groups", "agents", "attempts")


def _submit(conn: Connection, groups: int, per_group: int) -> None:
    keys = [(f"org{g % 7}", f"v{g}", "emulator") for g in range(groups)]
    conn.execute(Q.upsert_orgs, {"org_ids": sorted({k[0] for k in keys})})
    now = conn.execute(text("SELECT now()")).scalar_one()
    rows = conn.execute(
        Q.upsert_pending_groups,
        {
            "org_ids": [k[0] for k in keys],
            "app_version_ids": [k[1] for k in keys],
            "targets": [k[2] for k in keys],
            "best_priorities": ["medium"] * groups,
            "oldest_job_ats": [now] * groups,
            "available_ats": [now] * groups,
            "job_counts": [per_group] * groups,
        },
    )
    group_of = {(r.org_id, r.app_version_id, r.target): r.id for r in rows}
    specs = [(k, f"tests/t{i}.spec.ts") for k in keys for i in range(per_group)]
    conn.execute(  # insert_jobs' columns, written out: this measures updates, not the submit path
        text(
            """INSERT INTO jobs (org_id, app_version_id, target, test_path, priority, group_id)
               SELECT o, a, t, p, 'medium', g
               FROM unnest(CAST(:o AS text[]), CAST(:a AS text[]), CAST(:t AS text[]), CAST(:p AS text[]),
                           CAST(:g AS uuid[])) AS j (o, a, t, p, g)"""
        ),
        {
            "o": [k[0] for k, _ in specs],
            "a": [k[1] for k, _ in specs],
            "t": [k[2] for k, _ in specs],
            "p": [p for _, p in specs],
            "g": [group_of[k] for k, _ in specs],
        },
    )


def _requeue(conn: Connection, job_id: uuid.UUID) -> None:
    """_common.requeue, for one job."""
    keys = conn.execute(Q.job_keys_of, {"job_ids": [job_id]}).one()
    group = conn.execute(
        Q.upsert_pending_groups,
        {
            "org_ids": [keys.org_id],
            "app_version_ids": [keys.app_version_id],
            "targets": [keys.target],
            "best_priorities": [str(getattr(keys.best_priority, "value", keys.best_priority))],
            "oldest_job_ats": [keys.oldest_job_at],
            "available_ats": [keys.available_at],
            "job_counts": [keys.job_count],
        },
    ).one()
    conn.execute(
        Q.move_jobs_to_groups,
        {
            "job_ids": [job_id],
            "group_ids": [group.id],
            "org_ids": [keys.org_id],
            "app_version_ids": [keys.app_version_id],
            "targets": [keys.target],
        },
    )


def _run_group(conn: Connection, agent_id: uuid.UUID, heartbeats: int, counter: list[int]) -> bool:
    with conn.begin():  # the claim, as the server makes it (qualgent_claim)
        got = conn.execute(Q.claim, {"targets": ["emulator"], "agent_id": agent_id, "lease_seconds": 30}).scalar_one()
    if got.get("group") is None:
        return False
    claim = SimpleNamespace(id=uuid.UUID(got["group"]["id"]), lease_token=uuid.UUID(got["group"]["token"]))
    jobs = [SimpleNamespace(id=uuid.UUID(j["id"])) for j in got["jobs"]]
    held = {"group_id": claim.id, "token": claim.lease_token, "agent_id": agent_id}
    for job in jobs:  # each job started and finished in reports of their own, as a slow suite's are
        with conn.begin():
            conn.execute(Q.hold_claim, held)
            started = conn.execute(
                Q.start_jobs, {"job_ids": [job.id], "elapsed_ms": [0], "agent_id": agent_id, "group_id": claim.id}
            ).one()
        for _ in range(heartbeats):
            with conn.begin():
                beat = {"group_ids": [claim.id], "tokens": [claim.lease_token], "lease_seconds": 30}
                conn.execute(Q.heartbeat, {"agent_id": agent_id, **beat})
        counter[0] += 1
        infra = counter[0] % 10 == 0 and started.attempts == 1
        with conn.begin():
            conn.execute(Q.hold_claim, held)
            run = {
                "job_ids": [job.id],
                "numbers": [started.attempts],
                "outcomes": ["infra_error" if infra else "passed"],
                "finals": [False],
                "exit_codes": [3 if infra else 0],
                "durations": [1000],
                "output_tails": ["ok"],
                "errors": [None],
            }
            conn.execute(Q.finish_runs, run)
            if infra:  # finish_runs sent it round again (qualgent_settle)
                _requeue(conn, job.id)
            conn.execute(Q.close_group_and_free_agent, {"group_id": claim.id, "lease_seconds": 30})
    return True


def measure(url: str, agent_count: int, groups: int, per_group: int, heartbeats: int) -> dict[str, dict[str, Any]]:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            with conn.begin():
                agents = [
                    conn.execute(
                        text("INSERT INTO agents (name, targets) VALUES (:n, ARRAY['emulator']) RETURNING id"),
                        {"n": f"a{i}"},
                    ).scalar_one()
                    for i in range(agent_count)
                ]
                _submit(conn, groups, per_group)
            conn.commit()
            counter, turn = [0], 0
            while _run_group(conn, agents[turn % agent_count], heartbeats, counter):
                turn += 1
    finally:
        engine.dispose()  # the backend exits and flushes its statistics
    time.sleep(1.5)
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            """SELECT s.relname, s.n_tup_upd, s.n_tup_hot_upd, pg_relation_size(s.relid), pg_indexes_size(s.relid),
                      c.reloptions
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.relname = ANY(%s) ORDER BY s.relname""",
            [list(TABLES)],
        ).fetchall()
    return {
        name: {"updates": upd, "hot": hot, "bytes": size, "index_bytes": index_size, "options": opts}
        for name, upd, hot, size, index_size, opts in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default=os.environ.get("QUALGENT_TEST_DATABASE_URL"), required=False)
    parser.add_argument("--revision", default="head")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--jobs-per-group", type=int, default=10)
    parser.add_argument("--heartbeats-per-job", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--alter", help="a SQL file to run after migrating (to try a setting out)")
    args = parser.parse_args()
    if not args.server_url:
        parser.error("--server-url or QUALGENT_TEST_DATABASE_URL is required")
    name = f"qualgent_hygiene_{os.getpid()}"
    admin = libpq_url(args.server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(args.server_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url, args.revision)
        if args.alter:
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                conn.execute(Path(args.alter).read_text())
        began = time.perf_counter()
        figures = measure(url, args.agents, args.groups, args.jobs_per_group, args.heartbeats_per_job)
        elapsed = time.perf_counter() - began
        print(f"schema {args.revision}: {args.groups} groups x {args.jobs_per_group} jobs in {elapsed:.1f}s")
        print(f"{'table':<12}{'updates':>10}{'HOT':>10}{'HOT %':>8}{'heap kB':>9}{'index kB':>10}  options")
        for table, f in figures.items():
            share = 100 * f["hot"] / f["updates"] if f["updates"] else 0.0
            print(
                f"{table:<12}{f['updates']:>10}{f['hot']:>10}{share:>7.1f}%{f['bytes'] // 1024:>9}"
                f"{f['index_bytes'] // 1024:>10}  {f['options']}"
            )
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
