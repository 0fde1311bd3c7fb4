"""The reporting views (qualgent/server/db/schema.sql) and the reports API that `qgjob report` reads: what an analyst
sees in SQL is what the command prints."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from qualgent.server.db.engine import libpq_url
from tests.integration.conftest import Api
from tests.integration.test_schema import _index_names, explain

pytestmark = pytest.mark.anyio


def sql(url: str, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A query as an analyst runs it: a plain connection, no qualgent code in between."""
    conninfo = libpq_url(url)
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


async def run_group(api: Api, agent: str, exit_codes: dict[str, int]) -> None:
    """Claim the next group and report an exit code for each of its jobs, by test path."""
    claim = await api.claim(agent)
    assert claim is not None
    for job in claim["jobs"]:
        await api.run(agent, claim, job["id"], exit_codes[job["test_path"]])


async def test_three_passes_and_one_failure_is_a_success_rate_of_0_75(api: Api, db_url: str) -> None:
    for path in ("a.spec.ts", "b.spec.ts", "c.spec.ts", "d.spec.ts"):
        await api.submit(org_id="acme", test_path=path)
    cancelled = await api.submit(org_id="acme", test_path="e.spec.ts", app_version_id="v2")
    await api.call("DELETE", f"/jobs/{cancelled['id']}")
    await api.submit(org_id="other", test_path="x.spec.ts")  # pending: not in the report
    agent = await api.register()
    await run_group(api, agent, {"a.spec.ts": 0, "b.spec.ts": 0, "c.spec.ts": 0, "d.spec.ts": 1})

    rows = sql(db_url, "SELECT * FROM reporting.org_success_rates")
    assert [row["org_id"] for row in rows] == ["acme"]
    acme = rows[0]
    assert acme["success_rate"] == 0.75
    assert (acme["completed"], acme["failed"], acme["cancelled"], acme["finished"]) == (3, 1, 1, 5)
    assert acme["tier"] == "standard"
    assert acme["median_duration_seconds"] == pytest.approx(1.2)
    assert acme["median_queue_wait_seconds"] >= 0
    assert acme["p95_queue_wait_seconds"] >= acme["median_queue_wait_seconds"]

    report = await api.call("GET", "/reports/org-success-rates", org_id="acme")
    assert report["rows"][0]["success_rate"] == 0.75
    assert report["rows"][0]["completed"] == 3
    assert report["rows"][0]["failed"] == 1


async def test_a_pass_after_a_failure_on_the_same_build_is_a_flake(api: Api, db_url: str) -> None:
    agent = await api.register()
    await api.submit(test_path="flaky.spec.ts", app_version_id="v1")
    await api.submit(test_path="broken.spec.ts", app_version_id="v1")
    await run_group(api, agent, {"flaky.spec.ts": 1, "broken.spec.ts": 1})
    await api.submit(test_path="flaky.spec.ts", app_version_id="v1")  # CI re-ran it on the same build
    await api.submit(test_path="broken.spec.ts", app_version_id="v2")  # fixed in the next build
    await run_group(api, agent, {"flaky.spec.ts": 0})
    await run_group(api, agent, {"broken.spec.ts": 0})

    rows = {row["test_path"]: row for row in sql(db_url, "SELECT * FROM reporting.flaky_tests")}
    assert set(rows) == {"flaky.spec.ts", "broken.spec.ts"}
    flaky, broken = rows["flaky.spec.ts"], rows["broken.spec.ts"]
    assert (flaky["runs"], flaky["failures"], flaky["passes_after_failure"]) == (2, 1, 1)
    assert flaky["flake_rate"] == 0.5
    assert (broken["runs"], broken["failures"], broken["passes_after_failure"]) == (2, 1, 0)
    assert broken["flake_rate"] == 0
    assert broken["app_versions"] == 2

    report = await api.call("GET", "/reports/flaky-tests")
    assert [row["test_path"] for row in report["rows"]] == ["flaky.spec.ts", "broken.spec.ts"]


async def test_app_versions_count_tests_installs_and_time(api: Api, db_url: str) -> None:
    agent = await api.register()
    await api.submit(test_path="a.spec.ts", app_version_id="v1")
    await api.submit(test_path="b.spec.ts", app_version_id="v1")
    await run_group(api, agent, {"a.spec.ts": 0, "b.spec.ts": 1})
    await api.submit(test_path="a.spec.ts", app_version_id="v1")
    await run_group(api, agent, {"a.spec.ts": 0})

    (v1,) = sql(db_url, "SELECT * FROM reporting.app_versions WHERE org_id = 'acme'")
    assert v1["app_version_id"] == "v1"
    assert (v1["tests"], v1["finished"], v1["passed"], v1["failed"]) == (2, 3, 2, 1)
    assert v1["pass_rate"] == pytest.approx(0.6667)
    assert v1["installs"] == 2
    assert v1["test_seconds"] == pytest.approx(3.6)
    assert v1["install_seconds"] >= 0

    report = await api.call("GET", "/reports/app-versions", org_id="acme")
    assert report["rows"][0]["installs"] == 2


async def test_reports_filter_by_org_and_time_window(api: Api) -> None:
    agent = await api.register()
    await api.submit(org_id="acme", test_path="a.spec.ts")
    await run_group(api, agent, {"a.spec.ts": 0})
    await api.submit(org_id="bigco", test_path="b.spec.ts")
    await run_group(api, agent, {"b.spec.ts": 1})
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)

    everyone = await api.call("GET", "/reports/org-success-rates")
    assert [r["org_id"] for r in everyone["rows"]] == ["acme", "bigco"]
    bigco = await api.call("GET", "/reports/org-success-rates", org_id="bigco")
    assert [(r["org_id"], r["success_rate"]) for r in bigco["rows"]] == [("bigco", 0.0)]
    last_hour = await api.call("GET", "/reports/org-success-rates", since=(now - hour).isoformat())
    assert len(last_hour["rows"]) == 2
    future = await api.call("GET", "/reports/org-success-rates", since=(now + hour).isoformat())
    assert future["rows"] == []
    past = await api.call("GET", "/reports/app-versions", until=(now - hour).isoformat())
    assert past["rows"] == []
    recent = await api.call("GET", "/reports/recent-results", limit=1)
    assert [(r["org_id"], r["status"]) for r in recent["rows"]] == [("bigco", "failed")]

    backwards = await api.call(
        "GET", "/reports/org-success-rates", expect=400, since=now.isoformat(), until=(now - hour).isoformat()
    )
    assert "since" in str(backwards)
    unknown = await api.call("GET", "/reports/nonsense", expect=400)
    assert "name" in str(unknown)
    nul = await api.call("GET", "/reports/org-success-rates", expect=400, org_id="ac\x00me")
    assert "org_id" in str(nul)


def test_the_windowed_report_reads_finished_jobs_by_their_finish_time(db_url: str) -> None:
    """With many finished jobs, a recent window walks ix_jobs_finished_at instead of scanning them all."""
    sql(db_url, "INSERT INTO orgs (id) VALUES ('acme')")
    sql(
        db_url,
        """INSERT INTO job_groups (id, org_id, app_version_id, target, status, tier, best_priority, oldest_job_at,
                                   available_at)
           VALUES ('00000000-0000-4000-8000-000000000001', 'acme', 'v1', 'emulator', 'done', 'standard', 'medium',
                   now(), now())""",
    )
    sql(
        db_url,
        """INSERT INTO jobs (org_id, app_version_id, target, test_path, priority, status, group_id, attempts,
                             created_at, started_at, finished_at, duration_ms)
           SELECT 'acme', 'v1', 'emulator', 't' || i, 'medium', 'completed',
                  '00000000-0000-4000-8000-000000000001', 1, t - interval '1 minute', t, t, 1000
           FROM generate_series(1, 50000) AS i, LATERAL (SELECT now() - make_interval(mins => i) AS t) AS at""",
    )
    sql(db_url, "ANALYZE jobs")
    query = text("SELECT * FROM reporting.org_success_rates_between(now() - interval '1 hour')")
    assert "ix_jobs_finished_at" in _index_names(explain(db_url, query, {}))
    (row,) = sql(db_url, "SELECT * FROM reporting.org_success_rates_between(now() - interval '1 hour')")
    assert row["completed"] in (59, 60)  # the jobs finished in the last hour, one a minute
