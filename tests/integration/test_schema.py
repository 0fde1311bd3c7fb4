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


HEAD = 16  # qualgent_claim's fair-share pick sorts at most this many groups (migration 0015)


def claim_params(agent_id: object, targets: list[str], aging_seconds: float = 1e9) -> dict[str, Any]:
    """P.claim's parameters; by default an aging bound no group reaches (the ranking by tier, priority, age)."""
    return {
        "agent_id": agent_id,
        "targets": targets,
        "lease_seconds": 30.0,
        "aging_seconds": aging_seconds,
        "held": "[]",
        "min_chunk_seconds": 120.0,
    }


def claim_plan(url: str, targets: list[str], aging_seconds: float = 1e9) -> dict[str, Any]:
    """The plan of the claim's statement that chose the group (inside qualgent_claim) for a new agent serving
    `targets`: past the aging bound (`WITH aged`), else the head of the queue (`WITH head`)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        agent = conn.execute("INSERT INTO agents (name, targets) VALUES ('a', %s) RETURNING id", (targets,)).fetchone()
        assert agent is not None
        plans = plans_inside(conn, P.claim, claim_params(agent[0], targets, aging_seconds))
    texts = ("WITH aged AS", "WITH head AS")
    claim = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith(texts)]
    return claim[-1]  # type: ignore[no-any-return]


def big_sorts(plan: dict[str, Any], limit: int = HEAD) -> list[dict[str, Any]]:
    """Sort nodes of a plan that may sort more than `limit` rows (the fair-share pick sorts the queue's head)."""
    found = [plan] if plan["Node Type"] == "Sort" and plan["Plan Rows"] > limit else []
    for child in plan.get("Plans", []):
        found += big_sorts(child, limit)
    return found


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
    assert not big_sorts(plan), "the index gives the order: no sort of every candidate"
    aged = claim_plan(db_url, ["emulator"], aging_seconds=600)
    assert "ix_job_groups_aging" in _index_names(aged), json.dumps(aged, indent=1)
    assert "Sort" not in _node_types(aged), "the aging index gives the order"


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
    assert not big_sorts(plan), json.dumps(plan, indent=1)
    assert "ix_job_groups_claimable" in _index_names(plan)
