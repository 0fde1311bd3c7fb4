"""Reading the reporting views for one org and time window, in a fixed, bounded shape.

Each report is a windowed function of the `reporting` schema (`<name>_between(since, until)`, defined in
qualgent/server/db/schema.sql); the view of the same name is that function over all time. The queries here only add the
org filter, an order and a limit. Aggregating a large history sorts many rows, so a report runs with more
work_mem than the server's default (REPORT_WORK_MEM), and a longer statement timeout than the API's 30 s
(REPORT_TIMEOUT: all orgs over all time takes seconds on a million jobs), set for its own transaction only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import sql

from qualgent.server.db.database import Database
from qualgent.server.db.sql import REPORTING

REPORT_WORK_MEM = "64MB"
REPORT_TIMEOUT = "120s"


class ReportName(StrEnum):
    ORG_SUCCESS_RATES = "org-success-rates"
    FLAKY_TESTS = "flaky-tests"
    APP_VERSIONS = "app-versions"
    RECENT_RESULTS = "recent-results"  # not a view: the latest finished jobs


@dataclass(frozen=True, slots=True)
class _Report:
    function: str  # in the reporting schema
    order_by: tuple[tuple[str, bool], ...]  # (column, descending)

    def order(self) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{} DESC").format(sql.Identifier(c)) if desc else sql.Identifier(c) for c, desc in self.order_by
        )


REPORTS: dict[ReportName, _Report] = {
    ReportName.ORG_SUCCESS_RATES: _Report("org_success_rates_between", (("org_id", False),)),
    ReportName.FLAKY_TESTS: _Report(
        "flaky_tests_between",
        (
            ("flake_rate", True),
            ("passes_after_failure", True),
            ("failures", True),
            ("org_id", False),
            ("test_path", False),
        ),
    ),
    ReportName.APP_VERSIONS: _Report(
        "app_versions_between", (("last_finished_at", True), ("org_id", False), ("app_version_id", False))
    ),
}
"""The views' reports by the name the API and the CLI use."""


@dataclass(frozen=True, slots=True)
class ReportFilter:
    org_id: str | None = None
    since: dt.datetime | None = None  # None: from the beginning
    until: dt.datetime | None = None  # None: up to now
    limit: int = 100


def _org(f: ReportFilter, condition: str) -> sql.Composable:
    """The org's rows only, when the filter names one."""
    return sql.SQL(REPORTING.no_filter if f.org_id is None else condition)


async def run_report(db: Database, name: ReportName, f: ReportFilter) -> list[dict[str, Any]]:
    """One report's rows, for the filter's org and window."""
    if name is ReportName.RECENT_RESULTS:
        return await recent_results(db, f)
    report = REPORTS[name]
    query = REPORTING.compose(
        "report",
        function=sql.Identifier("reporting", report.function),
        org=_org(f, REPORTING.org_filter),
        order_by=report.order(),
    )
    params = {"since": f.since, "until": f.until, "org_id": f.org_id, "limit": f.limit}
    async with db.transaction() as tx:
        await tx.execute(REPORTING.report_settings, {"work_mem": REPORT_WORK_MEM, "timeout": REPORT_TIMEOUT})
        return [_plain(row) for row in await tx.rows(query, params)]


async def recent_results(db: Database, f: ReportFilter) -> list[dict[str, Any]]:
    """The latest finished jobs in the window, newest first (reads ix_jobs_finished_at backwards)."""
    query = REPORTING.compose("recent_results", org=_org(f, REPORTING.job_org_filter))
    rows = await db.rows(query, {"limit": f.limit, "org_id": f.org_id, "since": f.since, "until": f.until})
    return [_plain(row) for row in rows]


def _plain(row: Any) -> dict[str, Any]:
    """Enum values (an org's tier) as their strings."""
    return {key: getattr(value, "value", value) for key, value in row.items()}
