"""The schema comes from Alembic only, and the claim query uses the index designed for it."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause, text

from qualgent.db import migrate
from qualgent.db.engine import create_sync_engine, libpq_url
from qualgent.db.plans import plans_inside
from qualgent.db.sql import P


def test_migrations_produce_exactly_the_models_schema(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    assert migrate.schema_differences(empty_db_url) == []
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()


def test_migrations_downgrade_to_nothing_and_back(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    migrate.downgrade(empty_db_url, "base")
    with psycopg.connect(libpq_url(empty_db_url)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name <> 'alembic_version'"
        ).fetchone()
        assert tables == (0,)
    migrate.upgrade(empty_db_url)
    assert migrate.schema_differences(empty_db_url) == []


def explain(url: str, query: TextClause, params: dict[str, object]) -> dict[str, Any]:
    """The planner's plan for one of our named statements, with the production driver."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {query.text}"), params).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _node_types(plan: dict[str, Any]) -> set[str]:
    types = {str(plan["Node Type"])}
    for child in plan.get("Plans", []):
        types |= _node_types(child)
    return types


def _index_names(plan: dict[str, object]) -> set[str]:
    names = {str(plan["Index Name"])} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        names |= _index_names(child)
    return names


def claim_plan(url: str, targets: list[str]) -> dict[str, Any]:
    """The plan of the claim's own statement (inside qualgent_claim) for a new agent serving `targets`."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        agent = conn.execute("INSERT INTO agents (name, targets) VALUES ('a', %s) RETURNING id", (targets,)).fetchone()
        assert agent is not None
        plans = plans_inside(conn, P.claim, {"agent_id": agent[0], "targets": targets, "lease_seconds": 30.0})
    (claim,) = [p["Plan"] for p in plans if "WITH candidate AS" in p["Query Text"]]
    return claim  # type: ignore[no-any-return]


@pytest.mark.parametrize("pending_groups", [2_000, 50_000])
def test_the_claim_walks_the_claimable_index(db_url: str, pending_groups: int) -> None:
    """With many pending groups and many more finished ones, the claim reads ix_job_groups_claimable
    in scheduling order instead of scanning and sorting."""
    with psycopg.connect(libpq_url(db_url)) as conn:
        conn.execute("INSERT INTO orgs (id) VALUES ('acme')")
        conn.execute(
            """INSERT INTO job_groups (org_id, app_version_id, target, tier, best_priority, oldest_job_at,
                                       available_at, job_count, status)
               SELECT 'acme', 'v' || i, (ARRAY['emulator','device','browserstack'])[1 + mod(i, 3)], 'standard',
                      (ARRAY['high','medium','low'])[1 + mod(i, 3)]::job_priority,
                      now() - make_interval(secs => i), now() - make_interval(secs => i), 1,
                      CASE WHEN mod(i, 5) = 0 THEN 'pending' ELSE 'done' END
               FROM generate_series(1, %(n)s) AS i""",
            {"n": pending_groups * 5},
        )
        conn.execute("ANALYZE job_groups")
    plan = claim_plan(db_url, ["emulator"])
    assert "ix_job_groups_claimable" in _index_names(plan), json.dumps(plan, indent=1)
    assert "Sort" not in _node_types(plan), "the index gives the order: no sort of every candidate"


def test_the_claim_walks_the_index_on_statistics_older_than_a_burst(db_url: str) -> None:
    """Statistics taken while the queue was empty (a new install, or before a CI burst), then 500 groups arrive
    before autovacuum analyzes again: the planner believes there is nearly nothing to sort. qualgent_claim plans
    with sorting off, so it still walks ix_job_groups_claimable."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("ANALYZE job_groups")  # empty
        conn.execute("INSERT INTO orgs (id) VALUES ('acme')")
        conn.execute(
            """INSERT INTO job_groups (org_id, app_version_id, target, tier, best_priority, oldest_job_at,
                                       available_at, job_count)
               SELECT 'acme', 'v' || i, 'emulator', 'standard', 'medium', now() - make_interval(secs => i),
                      now() - make_interval(secs => i), 1
               FROM generate_series(1, 500) AS i"""
        )
    plan = claim_plan(db_url, ["emulator"])
    assert "Sort" not in _node_types(plan), json.dumps(plan, indent=1)
    assert "ix_job_groups_claimable" in _index_names(plan)
