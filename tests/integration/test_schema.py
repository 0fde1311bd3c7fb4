"""The schema: tables from the migrations, functions, triggers and views from schema.sql, the same whichever way a
database got there; and the claim query uses the index designed for it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import TextClause, text

from qualgent.server.db import migrate
from qualgent.server.db.engine import create_sync_engine, libpq_url
from qualgent.server.db.plans import plans_inside
from qualgent.server.db.sql import P
from tests.integration.catalog import REPLACEABLE, catalog, differences

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


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


def defined_in_schema_sql() -> dict[str, set[str]]:
    """The names schema.sql creates, by kind, as the catalog spells them (public's unqualified)."""
    text = migrate.schema_text()
    return {
        "function": set(re.findall(r"^CREATE FUNCTION ([\w.]+)\(", text, re.M)),
        "view": set(re.findall(r"^CREATE VIEW ([\w.]+)", text, re.M)),
        "trigger": {
            f"{table}.{name}" for name, table in re.findall(r"^CREATE TRIGGER (\w+)\n.* ON (\w+)\n", text, re.M)
        },
    }


def names(found: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    return {
        "function": {signature.split("(")[0] for signature in found["function"]},
        "view": set(found["view"]),
        "trigger": set(found["trigger"]),
    }


def test_an_empty_database_gets_exactly_schema_sql(empty_db_url: str, db_url: str) -> None:
    """Migrated from nothing, a database has the functions, triggers and views schema.sql defines, as it defines
    them, and nothing else: the same catalog as tables-only plus schema.sql run by hand."""
    migrate.upgrade(empty_db_url)
    migrated = catalog(empty_db_url)
    assert names(migrated) == defined_in_schema_sql()
    assert all(migrated[kind] for kind in REPLACEABLE)
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute(migrate.DROP_OBJECTS)
        assert all(not found for kind, found in catalog(db_url).items() if kind in REPLACEABLE)
        conn.execute(migrate.schema_text())
    assert differences(migrated, catalog(db_url)) == []
    assert migrate.is_up_to_date(empty_db_url)


def restore(url: str, fixture: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute((FIXTURES / fixture).read_text(encoding="utf-8"))


@pytest.mark.parametrize("revision", ["0012", "0016"])
def test_a_database_of_the_old_chain_upgrades_to_what_a_new_one_gets(
    empty_db_url: str, db_url: str, revision: str
) -> None:
    """A database the old migrations 0001-0012 (or on to 0016, what users run today) made, restored from a dump:
    the upgrade ends with exactly the catalog a fresh migration gives, and its rows are still there."""
    restore(empty_db_url, f"old_chain_{revision}.sql")
    assert migrate.current_revision(empty_db_url) == revision
    assert not migrate.is_up_to_date(empty_db_url)
    migrate.upgrade(empty_db_url)
    assert migrate.is_up_to_date(empty_db_url)
    assert differences(catalog(empty_db_url), catalog(db_url)) == []
    assert migrate.schema_differences(empty_db_url) == []
    with psycopg.connect(libpq_url(empty_db_url)) as conn:
        assert conn.execute("SELECT id FROM orgs").fetchall() == [("acme",)]
        assert conn.execute("SELECT count(*) FROM job_groups WHERE org_id = 'acme'").fetchone() == (1,)
        jobs = conn.execute("SELECT test_path, status FROM jobs ORDER BY test_path").fetchall()
        assert jobs == [("tests/cart.spec.js", "pending"), ("tests/login.spec.js", "pending")]
        # schema.sql's functions work on the old rows: one notification for the org's two jobs
        sent = conn.execute("SELECT qualgent_notify_jobs('pending', array_agg(id)) FROM jobs").fetchone()
        assert sent == (1,)


def oids(url: str) -> dict[str, int]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text, p.oid::int FROM pg_proc p "
            "WHERE p.pronamespace::regnamespace::text IN ('public', 'reporting')"
        ).fetchall()
    return dict(rows)


def test_upgrading_again_changes_nothing_and_a_changed_schema_sql_is_applied(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, first = catalog(db_url), oids(db_url)
    migrate.upgrade(db_url)
    assert oids(db_url) == first, "the same schema.sql is not applied again"
    assert differences(catalog(db_url), before) == []

    original = migrate.schema_text()
    marker = "CREATE FUNCTION qualgent_marker() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;\n"
    monkeypatch.setattr(migrate, "schema_text", lambda: original + marker)
    assert not migrate.is_up_to_date(db_url)
    migrate.upgrade(db_url)
    assert migrate.is_up_to_date(db_url)
    assert "qualgent_marker()" in oids(db_url)

    monkeypatch.setattr(migrate, "schema_text", lambda: original)
    migrate.upgrade(db_url)
    assert "qualgent_marker()" not in oids(db_url), "a function schema.sql no longer defines is dropped"
    assert differences(catalog(db_url), before) == []


def test_two_upgrades_at_once_take_turns(empty_db_url: str, db_url: str) -> None:
    """Two servers starting on one new database: the second waits for the first's transaction (the migration
    lock), then finds the schema at head and does nothing. Two processes: Alembic's context is one per process."""
    upgrade = f"from qualgent.server.db import migrate; migrate.upgrade({empty_db_url!r})"
    both = [subprocess.Popen([sys.executable, "-c", upgrade], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in both:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert differences(catalog(empty_db_url), catalog(db_url)) == []


def test_a_database_older_than_the_baseline_is_refused_with_what_to_do(empty_db_url: str) -> None:
    with psycopg.connect(libpq_url(empty_db_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0009')")
    with pytest.raises(migrate.SchemaTooOld, match=r"revision 0009, from before the 0012 baseline.*5ba93f2"):
        migrate.upgrade(empty_db_url)
    assert migrate.current_revision(empty_db_url) == "0009"


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
