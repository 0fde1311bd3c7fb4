"""The plans PostgreSQL runs for the statements inside the hot path's stored functions (qualgent/server/db/schema.sql).

EXPLAIN shows a function call as one opaque node; auto_explain, loaded for one transaction and set to report at
NOTICE level, hands the client the plan of every statement the function runs. The transaction is rolled back.
Used by the plan regression tests and by benchmarks/scale.py. LOAD needs a superuser (or auto_explain among
the server's plugins)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.errors import Diagnostic

_SETTINGS = {
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "json",
    "auto_explain.log_level": "notice",
}


def plans_inside(
    conn: psycopg.Connection[Any], sql: str, params: Mapping[str, Any] | None = None, analyze: bool = False
) -> list[dict[str, Any]]:
    """Run `sql` (psycopg's parameter style) in a transaction that is rolled back; return the plan of every
    statement it ran, nested ones included, each with its "Query Text" and "Plan" (with "Actual" figures and
    buffers when `analyze`)."""
    plans: list[dict[str, Any]] = []

    def collect(notice: Diagnostic) -> None:
        message = notice.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message.split("plan:", 1)[1]))

    conn.add_notice_handler(collect)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("LOAD 'auto_explain'")
            settings = {**_SETTINGS, "auto_explain.log_analyze": "on" if analyze else "off"}
            settings["auto_explain.log_buffers"] = settings["auto_explain.log_analyze"]
            for name, value in settings.items():
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            conn.execute(sql, params)
    finally:
        conn.remove_notice_handler(collect)
    return plans
