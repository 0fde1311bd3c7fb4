"""Plan regression tests: with realistic row counts, every hot-path statement reads the index meant for it and
never scans jobs, job_groups or attempts whole. (test_schema.py's claim guard sweeps the pending-group count; this file
puts the claim among everything else a busy queue holds.)

The database is loaded once for the module with generate_series: 1,000 agents (200 busy); 5,000 pending groups
of 20 jobs (100,000 pending jobs); 200 running groups of 10 jobs (one running, a few cancelled, a few lapsed
leases); 20,000 done groups of 15 finished jobs (300,000 jobs, 300,000 attempts) over 90 days; then VACUUM
ANALYZE, as autovacuum would have left it.
Each test runs EXPLAIN (FORMAT JSON) on the very named statement the server runs, through the production driver;
for the stored functions of the hot path (qualgent/server/db/schema.sql), auto_explain reports the plan of each
statement
they run (qualgent.server.db.plans).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause

from qualgent.server.db.engine import libpq_url
from qualgent.server.db.plans import plans_inside
from qualgent.server.db.sql import RETENTION, P
from tests.conftest import create_database, drop_database
from tests.integration.test_schema import _index_names, _node_types, big_sorts, claim_params, explain
from tests.sqla import AsText

Q = AsText(P)
R = AsText(RETENTION)

TARGETS = "(ARRAY['emulator', 'device', 'browserstack'])"
LOAD = f"""
INSERT INTO orgs (id, tier)
SELECT 'org' || i, (ARRAY['premium', 'enterprise', 'standard'])[1 + i % 3]::org_tier FROM generate_series(0, 49) i;
INSERT INTO agents (id, name, targets, status)
SELECT md5('agent' || i)::uuid, 'agent-' || i, ARRAY[{TARGETS}[1 + i % 3]],
       CASE WHEN i < 200 THEN 'busy' ELSE 'idle' END
FROM generate_series(0, 999) i;
-- 20,000 done groups over 90 days, 300,000 finished jobs and their attempts
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at, available_at,
                        job_count, agent_id, claimed_at, finished_at, created_at)
SELECT md5('done' || g)::uuid, 'org' || g % 50, 'v' || g, {TARGETS}[1 + g % 3], 'done',
       (ARRAY['premium', 'enterprise', 'standard'])[1 + g % 50 % 3]::org_tier, 'medium', t, t, 15,
       md5('agent' || g % 1000)::uuid, t, t + interval '10 minutes', t
FROM generate_series(0, 19999) g, LATERAL (SELECT now() - interval '90 days' + g * interval '6 minutes' AS t) x;
INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, status, group_id, agent_id, attempts,
                  created_at, started_at, finished_at, updated_at, duration_ms, exit_code)
SELECT md5('job' || k)::uuid, 'org' || k / 15 % 50, 'v' || k / 15, {TARGETS}[1 + k / 15 % 3],
       'tests/t' || k % 15 || '.spec.ts', 'medium',
       (ARRAY['completed', 'completed', 'completed', 'failed', 'cancelled'])[1 + k % 5],
       md5('done' || k / 15)::uuid, md5('agent' || k / 15 % 1000)::uuid, 1, t, t, t + interval '30 seconds',
       t + interval '30 seconds', 30000, 0
FROM generate_series(0, 299999) k,
     LATERAL (SELECT now() - interval '90 days' + (k / 15) * interval '6 minutes' + (k % 15) * interval '30 seconds'
              AS t) x;
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms)
SELECT id, 1, agent_id, group_id, started_at, finished_at,
       CASE WHEN status = 'failed' THEN 'test_failed' ELSE 'passed' END, 0, 30000
FROM jobs;
-- 5,000 pending groups of 20 pending jobs
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at, available_at,
                        job_count)
SELECT md5('pending' || g)::uuid, 'org' || g % 50, 'p' || g, {TARGETS}[1 + g % 3], 'pending',
       (ARRAY['premium', 'enterprise', 'standard'])[1 + g % 50 % 3]::org_tier,
       (ARRAY['high', 'medium', 'low'])[1 + g % 3]::job_priority, now() - g * interval '1 second',
       now() - g * interval '1 second', 20
FROM generate_series(0, 4999) g;
INSERT INTO jobs (org_id, app_version_id, target, test_path, priority, status, group_id, created_at)
SELECT 'org' || k / 20 % 50, 'p' || k / 20, {TARGETS}[1 + k / 20 % 3], 'tests/p' || k % 20 || '.spec.ts',
       (ARRAY['high', 'medium', 'low'])[1 + k % 3]::job_priority, 'pending', md5('pending' || k / 20)::uuid,
       now() - (k / 20) * interval '1 second'
FROM generate_series(0, 99999) k;
-- 200 running groups (agents 0-199), 5 of them with a lapsed lease: one job running, 2 cancelled, 7 pending
INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at, available_at,
                        job_count, agent_id, lease_token, lease_expires_at, claimed_at)
SELECT md5('running' || g)::uuid, 'org' || g % 50, 'r' || g, {TARGETS}[1 + g % 3], 'running',
       (ARRAY['premium', 'enterprise', 'standard'])[1 + g % 50 % 3]::org_tier, 'medium', now(), now(), 10,
       md5('agent' || g)::uuid, gen_random_uuid(),
       CASE WHEN g < 5 THEN now() - interval '10 seconds' ELSE now() + interval '30 seconds' END, now()
FROM generate_series(0, 199) g;
INSERT INTO jobs (id, org_id, app_version_id, target, test_path, priority, status, group_id, agent_id, attempts,
                  started_at)
SELECT md5('rjob' || k)::uuid, 'org' || k / 10 % 50, 'r' || k / 10, {TARGETS}[1 + k / 10 % 3],
       'tests/r' || k % 10 || '.spec.ts', 'medium',
       CASE k % 10 WHEN 0 THEN 'running' WHEN 1 THEN 'cancelled' WHEN 2 THEN 'cancelled' ELSE 'pending' END,
       md5('running' || k / 10)::uuid, CASE WHEN k % 10 = 0 THEN md5('agent' || k / 10)::uuid END,
       CASE WHEN k % 10 = 0 THEN 1 ELSE 0 END, CASE WHEN k % 10 = 0 THEN now() END
FROM generate_series(0, 1999) k;
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at)
SELECT id, 1, agent_id, group_id, started_at FROM jobs WHERE status = 'running';
"""

NEVER_SCANNED = {"jobs", "job_groups", "attempts"}  # whole: they hold the history


def _md5_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(text.encode()).hexdigest())  # noqa: S324 - the same ids as md5() in LOAD


@pytest.fixture(scope="module")
def loaded(pg_server: str, template_db: str) -> Iterator[str]:
    """A database at the schema's head, loaded with a busy queue's rows once for every test of the module."""
    name = f"qualgent_plans_{os.getpid()}"
    url = create_database(pg_server, name, template=template_db)
    conninfo = libpq_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The rows are consistent by construction: skip the foreign keys' per-row checks (3x faster to load).
        conn.execute("SET session_replication_role = replica")
        conn.execute(LOAD)  # type: ignore[call-overload]  # several statements, no parameters
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute("VACUUM ANALYZE")
    yield url
    drop_database(pg_server, name)


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node of a plan."""
    found = [(str(plan["Node Type"]), plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def assert_plan(url: str, query: TextClause, params: dict[str, Any], *indexes: str) -> dict[str, Any]:
    plan = explain(url, query, params)
    shown = json.dumps(plan, indent=1, default=str)
    used = _index_names(plan)
    missing = {wanted for wanted in indexes if not set(wanted.split("|")) & used}  # "a|b": either will do
    assert not missing, f"{sorted(missing)} not used:\n{shown}"
    seq_scans = {relation for node, relation, _ in _scans(plan) if node == "Seq Scan"} & NEVER_SCANNED
    assert not seq_scans, f"a sequential scan of {sorted(seq_scans)}:\n{shown}"
    return plan


AGENT = _md5_uuid("agent7")
RUNNING = _md5_uuid("running7")
PENDING = [_md5_uuid(f"pending{g}") for g in range(0, 5000, 500)]
FINISHED_JOBS = [_md5_uuid(f"job{k}") for k in range(0, 300000, 3000)]


# A progress report's worth of runs (batched start and finish statements take arrays).
_RUNS: dict[str, Any] = {
    "job_ids": FINISHED_JOBS[:20],
    "elapsed_ms": [5] * 20,
    "finals": [False] * 20,
    "outcomes": ["passed"] * 20,
    "exit_codes": [0] * 20,
    "durations": [5] * 20,
    "output_tails": [""] * 20,
    "errors": [None] * 20,
    "error_locations": [None] * 20,
}


def assert_plans_inside(url: str, sql: str, params: dict[str, Any], *indexes: str) -> list[dict[str, Any]]:
    """As assert_plan, for a call of one of the hot path's stored functions: over the plans of the statements it
    ran (qualgent.server.db.plans)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        plans = [p for p in plans_inside(conn, sql, params) if "set_config" not in p["Query Text"]]
    shown = json.dumps(plans, indent=1, default=str)
    used = set().union(*(_index_names(p["Plan"]) for p in plans))
    missing = {wanted for wanted in indexes if not set(wanted.split("|")) & used}
    assert not missing, f"{sorted(missing)} not used:\n{shown}"
    seq_scans = {relation for p in plans for node, relation, _ in _scans(p["Plan"]) if node == "Seq Scan"}
    assert not seq_scans & NEVER_SCANNED, f"a sequential scan of {sorted(seq_scans & NEVER_SCANNED)}:\n{shown}"
    return plans


def test_the_claim_walks_the_claimable_index_among_everything_else(loaded: str) -> None:
    plans = assert_plans_inside(
        loaded,
        P.claim,
        claim_params(AGENT, ["emulator"]),
        "pk_agents",
        "ix_job_groups_aging",  # nothing past the bound: an index scan that ends at once
        "ix_job_groups_claimable",
        "ix_jobs_active_by_group",
    )
    (aged,) = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("WITH aged AS")]
    assert "Sort" not in _node_types(aged)
    (head,) = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("WITH head AS")]
    assert not big_sorts(head), json.dumps(head, indent=1)


def test_the_claim_of_an_aged_group_walks_the_aging_index(loaded: str) -> None:
    plans = assert_plans_inside(
        loaded, P.claim, claim_params(AGENT, ["device"], aging_seconds=600), "ix_job_groups_aging", "pk_agents"
    )
    (aged,) = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("WITH aged AS")]
    assert "ix_job_groups_aging" in _index_names(aged)
    assert "Sort" not in _node_types(aged)
    assert not [p for p in plans if p["Query Text"].lstrip().startswith("WITH head AS")], "an aged group goes first"


def test_a_capped_claim_counts_running_groups_by_index(loaded: str) -> None:
    """A cap on the target and on the org: each is counted through its partial index of running groups, and the
    agent's held build is looked up by the pending key."""
    with psycopg.connect(libpq_url(loaded), autocommit=True) as conn:
        conn.execute("INSERT INTO targets (target, max_running) VALUES ('emulator', 1000)")
        conn.execute("UPDATE orgs SET max_running = 1000")
    try:
        held = json.dumps([{"target": "emulator", "org_id": "org0", "app_version_id": "p0"}])
        assert_plans_inside(
            loaded,
            P.claim,
            {**claim_params(AGENT, ["emulator"]), "held": held},
            "ix_job_groups_running_target",
            "ix_job_groups_running_org",
            "uq_job_groups_pending_key",
        )
    finally:
        with psycopg.connect(libpq_url(loaded), autocommit=True) as conn:
            conn.execute("DELETE FROM targets")
            conn.execute("UPDATE orgs SET max_running = NULL")


_RUN_REPORT = json.dumps(
    [
        {"id": str(job), "elapsed_ms": 5, "outcome": "passed", "exit_code": 0, "duration_ms": 5, "output_tail": ""}
        for job in FINISHED_JOBS[:20]
    ]
)


@pytest.mark.parametrize(
    ("name", "params", "indexes"),
    [
        (
            "hold_claim",
            {"group_id": RUNNING, "token": uuid.uuid4(), "agent_id": AGENT},
            ["pk_job_groups|ix_job_groups_running"],
        ),
        # RUNNING still has a job to run: the group is not closed, so its agent is not looked at.
        (
            "close_group_and_free_agent",
            {"group_id": RUNNING, "lease_seconds": 30.0},
            ["pk_job_groups", "ix_jobs_active_by_group"],
        ),
        (
            "run_jobs",
            {"agent_id": AGENT, "group_id": RUNNING, "runs": _RUN_REPORT},
            ["pk_jobs|ix_jobs_active_by_group"],
        ),
    ],
)
def test_the_hot_path_functions_read_their_indexes(
    loaded: str, name: str, params: dict[str, Any], indexes: list[str]
) -> None:
    assert_plans_inside(loaded, getattr(P, name), params, *indexes)


def test_rescue_reads_only_the_running_groups(loaded: str) -> None:
    # Any of the partial indexes over running groups reads exactly those (the caps' two are as small).
    running = "ix_job_groups_running|ix_job_groups_running_org|ix_job_groups_running_target"
    assert_plan(loaded, Q.lapsed_claims, {"limit": 100}, running)


@pytest.mark.parametrize(
    ("name", "params", "indexes"),
    [
        ("group_jobs_to_run", {"group_id": PENDING[3]}, ["ix_jobs_active_by_group"]),
        ("lock_claim", {"group_id": RUNNING}, ["pk_job_groups"]),
        ("refresh_pending_group", {"group_id": PENDING[2]}, ["pk_job_groups", "ix_jobs_active_by_group"]),
        ("running_attempt_of_group", {"group_id": RUNNING}, ["ix_attempts_group_id", "pk_jobs"]),
        ("agent_idle_if_free", {"agent_id": AGENT}, ["pk_agents", "ix_job_groups_running"]),
        (
            "heartbeat",  # the agent's row, its presented claims' leases, its running groups' cancelled jobs
            {"agent_id": AGENT, "group_ids": [RUNNING], "tokens": [uuid.uuid4()], "lease_seconds": 30},
            ["pk_agents", "pk_job_groups|ix_job_groups_running", "ix_job_groups_running", "ix_jobs_group_id"],
        ),
        ("get_jobs", {"job_ids": FINISHED_JOBS}, ["pk_jobs"]),
        ("lock_jobs", {"job_ids": FINISHED_JOBS[:10]}, ["pk_jobs"]),
        (
            "queue_estimates",  # the wait route's place and ETA of pending groups
            {"group_ids": PENDING, "offline_after": 90.0},
            ["pk_job_groups", "ix_job_groups_claimable", "ix_job_groups_running_target"],
        ),
        ("record_group_history", {"group_id": RUNNING}, ["ix_jobs_group_id|ix_jobs_active_by_group", "pk_job_groups"]),
        (
            "start_jobs",
            {"job_ids": FINISHED_JOBS[:20], "elapsed_ms": [0] * 20, "agent_id": AGENT, "group_id": RUNNING},
            ["pk_jobs|ix_jobs_active_by_group"],  # by id, or the group's pending jobs: both a few rows
        ),
        ("finish_runs", {**_RUNS, "numbers": [1] * 20}, ["pk_jobs", "pk_attempts"]),
        ("retry_in_place", {**_RUNS, "numbers": [1] * 20}, ["pk_jobs", "pk_attempts"]),
    ],
)
def test_the_hot_path_reads_its_indexes(loaded: str, name: str, params: dict[str, Any], indexes: list[str]) -> None:
    assert_plan(loaded, getattr(Q, name), params, *indexes)


def test_waiting_for_jobs_reads_them_by_key(loaded: str) -> None:
    """What api/waiting.py reads on every wake-up: jobs.get (get_job, job_attempts) and jobs.get_many."""
    job = FINISHED_JOBS[7]
    assert_plan(loaded, Q.get_job, {"job_id": job}, "pk_jobs")
    assert_plan(loaded, Q.job_attempts, {"job_id": job}, "pk_attempts")
    assert_plan(loaded, Q.get_jobs, {"job_ids": FINISHED_JOBS[:3]}, "pk_jobs")


def test_retention_reads_old_rows_by_age(loaded: str) -> None:
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=80)
    assert_plan(loaded, R.prunable_jobs, {"cutoff": cutoff, "limit": 1000}, "ix_jobs_finished_at")
    assert_plan(loaded, R.prunable_groups, {"cutoff": cutoff, "limit": 1000}, "ix_jobs_group_id")
