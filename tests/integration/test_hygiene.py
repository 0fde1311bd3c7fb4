"""Table hygiene: the storage parameters the models declare are the database's, and the updates the hot path makes
most often (heartbeats, lease extensions) are HOT."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from sqlalchemy import text

from qualgent.server.db.engine import create_sync_engine, libpq_url
from qualgent.server.db.models import Base
from qualgent.server.db.sql import P
from tests.sqla import AsText

Q = AsText(P)


def storage_parameters(url: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        ).fetchall()
    return {name: dict(option.split("=", 1) for option in options or ()) for name, options in rows}


def declared_parameters() -> dict[str, dict[str, str]]:
    return {
        table.name: {key: str(value) for key, value in (table.dialect_options["postgresql"]["with"] or {}).items()}
        for table in Base.metadata.tables.values()
    }


def test_the_storage_parameters_are_the_models(db_url: str) -> None:
    """Alembic's comparison ignores storage parameters; this does not."""
    actual = storage_parameters(db_url)
    for table, declared in declared_parameters().items():
        assert actual[table] == declared, table
    assert actual["agents"] == {"fillfactor": "50"}
    assert actual["jobs"].get("fillfactor") is None


def test_heartbeats_and_lease_extensions_are_hot_updates(db_url: str) -> None:
    """No index covers agents.last_heartbeat_at or job_groups.lease_expires_at: the rows are rewritten on their
    own page, with no index entry. Counted in the updating transaction itself (pg_stat_get_xact_*)."""
    agent, group, token = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO orgs (id) VALUES ('acme')"))
            conn.execute(
                text("INSERT INTO agents (id, name, targets) VALUES (:a, 'a', ARRAY['emulator'])"), {"a": agent}
            )
            conn.execute(
                text(
                    """INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority,
                                               oldest_job_at, available_at, agent_id, lease_token, lease_expires_at)
                       VALUES (:g, 'acme', 'v1', 'emulator', 'running', 'standard', 'medium', now(), now(), :a, :t,
                               now())"""
                ),
                {"g": group, "a": agent, "t": token},
            )
            conn.execute(  # a job left to run: the reports below extend the group's lease, they do not close it
                text(
                    """INSERT INTO jobs (org_id, app_version_id, target, test_path, priority, status, group_id)
                       VALUES ('acme', 'v1', 'emulator', 'tests/a.spec.ts', 'medium', 'running', :g)"""
                ),
                {"g": group},
            )
        with engine.begin() as conn:
            for _ in range(3):
                beat = {"agent_id": agent, "group_ids": [group], "tokens": [token], "lease_seconds": 30}
                assert conn.execute(Q.heartbeat, beat).one().held == [group]
                held = {"group_id": group, "token": token, "agent_id": agent}  # each progress report:
                assert conn.execute(Q.hold_claim, held).scalar_one() is True  # the row locked, then
                closing = {"group_id": group, "lease_seconds": 30}
                assert conn.execute(Q.close_group_and_free_agent, closing).scalar_one() is False  # its lease extended
            counts: dict[str, Any] = {
                table: conn.execute(
                    text(
                        "SELECT pg_stat_get_xact_tuples_updated(CAST(:t AS regclass)) AS updated, "
                        "pg_stat_get_xact_tuples_hot_updated(CAST(:t AS regclass)) AS hot"
                    ),
                    {"t": table},
                ).one()
                for table in ("agents", "job_groups")
            }
    finally:
        engine.dispose()
    assert (counts["agents"].updated, counts["agents"].hot) == (3, 3)
    assert (counts["job_groups"].updated, counts["job_groups"].hot) == (6, 6)
