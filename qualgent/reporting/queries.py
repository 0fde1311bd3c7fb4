"""Reading the reporting views for one org and time window, in a fixed, bounded shape.

Each report is a windowed function of the `reporting` schema (`<name>_between(since, until)`, defined in
qualgent/db/schema.sql); the view of the same name is that function over all time. The queries here only add the
org filter, an order and a limit. Aggregating a large history sorts many rows, so a report runs with more
work_mem than the server's default (REPORT_WORK_MEM), and a longer statement timeout than the API's 30 s
(REPORT_TIMEOUT: all orgs over all time takes seconds on a million jobs), set for its own transaction only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

REPORT_WORK_MEM = "64MB"
REPORT_TIMEOUT = "120s"


class ReportName(StrEnum):
    ORG_SUCCESS_RATES = "org-success-rates"
    FLAKY_TESTS = "flaky-tests"
    APP_VERSIONS = "app-versions"
    RECENT_RESULTS = "recent-results"  # not a view: the latest finished jobs


@dataclass(frozen=True, slots=True)
class _Report:
    function: str
    order_by: str


REPORTS: dict[ReportName, _Report] = {
    ReportName.ORG_SUCCESS_RATES: _Report("reporting.org_success_rates_between", "org_id"),
    ReportName.FLAKY_TESTS: _Report(
        "reporting.flaky_tests_between",
        "flake_rate DESC, passes_after_failure DESC, failures DESC, org_id, test_path",
    ),
    ReportName.APP_VERSIONS: _Report("reporting.app_versions_between", "last_finished_at DESC, org_id, app_version_id"),
}
"""The views' reports by the name the API and the CLI use."""


@dataclass(frozen=True, slots=True)
class ReportFilter:
    org_id: str | None = None
    since: dt.datetime | None = None  # None: from the beginning
    until: dt.datetime | None = None  # None: up to now
    limit: int = 100


async def run_report(engine: AsyncEngine, name: ReportName, f: ReportFilter) -> list[dict[str, Any]]:
    """One report's rows, for the filter's org and window."""
    if name is ReportName.RECENT_RESULTS:
        return await recent_results(engine, f)
    report = REPORTS[name]
    where = "WHERE org_id = :org_id" if f.org_id is not None else ""
    query = text(
        f"SELECT * FROM {report.function}(CAST(:since AS timestamptz), CAST(:until AS timestamptz)) "  # noqa: S608 - fixed names
        f"{where} ORDER BY {report.order_by} LIMIT :limit"
    )
    params = {"since": f.since, "until": f.until, "org_id": f.org_id, "limit": f.limit}
    async with engine.begin() as conn:
        await conn.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        await conn.execute(text(f"SET LOCAL statement_timeout = '{REPORT_TIMEOUT}'"))
        rows = await conn.execute(query, params)
        return [_plain(row) for row in rows.mappings()]


_RECENT = """
SELECT j.id, j.org_id, j.app_version_id, j.target, j.test_path, j.status, j.attempts, j.duration_ms,
       j.exit_code, j.agent_id, j.group_id, j.finished_at
FROM jobs j
WHERE j.status IN ('completed', 'failed', 'cancelled') AND {where}
ORDER BY j.finished_at DESC
LIMIT :limit
"""


async def recent_results(engine: AsyncEngine, f: ReportFilter) -> list[dict[str, Any]]:
    """The latest finished jobs in the window, newest first (reads ix_jobs_finished_at backwards)."""
    where = [
        "j.finished_at >= COALESCE(CAST(:since AS timestamptz), '-infinity')",
        "j.finished_at < COALESCE(CAST(:until AS timestamptz), 'infinity')",
    ]
    if f.org_id is not None:
        where.append("j.org_id = :org_id")
    query = text(_RECENT.format(where=" AND ".join(where)))
    async with engine.connect() as conn:
        rows = await conn.execute(query, {"limit": f.limit, "org_id": f.org_id, "since": f.since, "until": f.until})
        return [_plain(row) for row in rows.mappings()]


def _plain(row: Any) -> dict[str, Any]:
    """Enum values (an org's tier) as their strings."""
    return {key: getattr(value, "value", value) for key, value in row.items()}
