"""Retention (qualgent/server/queue/retention.py): old finished work is folded into the reporting
rollups and deleted in batches; live work is never touched; the reporting views say the same before and after."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import psycopg
import pytest

from benchmarks.reporting import FILL
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import retention
from tests.integration.conftest import Api
from tests.integration.test_reporting import run_group, sql

pytestmark = pytest.mark.anyio

DAY = dt.timedelta(days=1)
EXACT = {
    "org_success_rates": ("org_id", "tier", "finished", "completed", "failed", "cancelled", "success_rate",
                          "last_finished_at"),
    "app_versions": ("org_id", "app_version_id", "tests", "finished", "passed", "failed", "cancelled", "pass_rate",
                     "installs", "first_submitted_at", "last_finished_at"),
    "flaky_tests": ("org_id", "test_path", "runs", "failures", "passes_after_failure", "flake_rate", "failure_rate",
                    "app_versions", "last_failure_at"),
}  # fmt: skip
SUMS = {"app_versions": ("install_seconds", "test_seconds")}  # float sums: equal but for rounding
ESTIMATES = {"org_success_rates": ("median_duration_seconds", "median_queue_wait_seconds", "p95_queue_wait_seconds")}
KEYS = {
    "org_success_rates": ("org_id",),
    "app_versions": ("org_id", "app_version_id"),
    "flaky_tests": ("org_id", "test_path"),
}


SIXTY_DAYS = "(date_trunc('day', now() AT TIME ZONE 'UTC') - interval '60 days') AT TIME ZONE 'UTC'"


def reports(url: str, since: str | None = None) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every reporting view (or its function over a window), row by row, keyed."""
    shown: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for view, keys in KEYS.items():
        source = f"reporting.{view}" if since is None else f"reporting.{view}_between({since})"
        shown[view] = {tuple(row[k] for k in keys): row for row in sql(url, f"SELECT * FROM {source}")}
    return shown


def assert_same_reports(before: dict[str, Any], after: dict[str, Any]) -> None:
    for view in KEYS:
        assert before[view].keys() == after[view].keys(), view
        for key, old in before[view].items():
            new = after[view][key]
            assert {c: new[c] for c in EXACT[view]} == {c: old[c] for c in EXACT[view]}, (view, key)
            for column in SUMS.get(view, ()):
                assert new[column] == pytest.approx(old[column], rel=1e-9, abs=1e-6), (view, key, column)
            for column in ESTIMATES.get(view, ()):
                if old[column] is None:
                    assert new[column] is None, (view, key, column)
                else:  # read from log buckets 2^(1/8) wide once pruned rows are in: within 9%
                    assert new[column] == pytest.approx(old[column], rel=0.09, abs=0.002), (view, key, column)


def counts(url: str) -> dict[str, int]:
    tables = ("jobs", "attempts", "job_groups", "submissions")
    row = sql(url, "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in tables))[0]
    return dict(row)


def backdate(url: str, where: str, by: dt.timedelta) -> None:
    """Move some jobs (and their attempts) back in time, as if they had finished long ago."""
    params = {"by": by}
    sql(
        url,
        f"""UPDATE attempts SET started_at = started_at - %(by)s, finished_at = finished_at - %(by)s
            WHERE job_id IN (SELECT id FROM jobs WHERE {where})""",
        params,
    )
    sql(
        url,
        f"""UPDATE jobs SET created_at = created_at - %(by)s, started_at = started_at - %(by)s,
                            finished_at = finished_at - %(by)s, updated_at = updated_at - %(by)s
            WHERE {where}""",
        params,
    )


def backdate_groups(url: str, where: str, by: dt.timedelta) -> None:
    sql(
        url,
        f"""UPDATE job_groups SET created_at = created_at - %(by)s, claimed_at = claimed_at - %(by)s,
                                  finished_at = finished_at - %(by)s, oldest_job_at = oldest_job_at - %(by)s,
                                  available_at = available_at - %(by)s
            WHERE {where}""",
        {"by": by},
    )


async def test_prune_deletes_exactly_the_old_finished_rows_and_reports_stay_true(
    api: Api, db: Database, db_url: str
) -> None:
    agent = await api.register()
    # Old: v1 (a pass, a failure, a pass) and v2 (a pass; its other job cancelled before the claim).
    for path in ("a.spec.ts", "b.spec.ts", "c.spec.ts"):
        await api.submit(app_version_id="v1", test_path=path)
    await run_group(api, agent, {"a.spec.ts": 0, "b.spec.ts": 1, "c.spec.ts": 0})
    await api.submit(app_version_id="v2", test_path="a.spec.ts")
    cancelled = await api.submit(app_version_id="v2", test_path="d.spec.ts")
    await api.call("DELETE", f"/jobs/{cancelled['id']}")
    await run_group(api, agent, {"a.spec.ts": 0})
    # Old but live: a pending job, and a running one.
    running = await api.submit(app_version_id="v4", test_path="r.spec.ts", org_id="other")
    other = await api.register("other", ["emulator"])
    claim = await api.claim(other)
    assert claim is not None
    assert [j["id"] for j in claim["jobs"]] == [running["id"]]
    pending = await api.submit(app_version_id="v3", test_path="p.spec.ts", org_id="other", target="device")
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    await api.call("POST", f"/agents/{other}/jobs/{running['id']}/start", ref)
    # An idempotency key, old.
    keyed = {"org_id": "acme", "app_version_id": "v9", "test_path": "k.spec.ts", "target": "device"}
    assert (await api.client.post("/api/jobs", json=keyed, headers={"Idempotency-Key": "ci-1"})).status_code == 201
    sql(db_url, "UPDATE submissions SET created_at = created_at - interval '100 days'")
    backdate(db_url, "true", 100 * DAY)
    backdate_groups(db_url, "true", 100 * DAY)
    # Recent: v1 again, a failure then a pass (a flake on the same build, across the cutoff: b failed long ago).
    await api.submit(app_version_id="v1", test_path="b.spec.ts")
    await run_group(api, agent, {"b.spec.ts": 0})
    old_ids = {r["id"] for r in sql(db_url, "SELECT id FROM jobs WHERE finished_at < now() - interval '90 days'")}
    live_ids = {r["id"] for r in sql(db_url, "SELECT id FROM jobs")} - old_ids
    assert len(old_ids) == 5
    assert len(live_ids) == 4  # pending, running, k (pending), recent b
    before = reports(db_url)
    assert before["flaky_tests"][("acme", "b.spec.ts")]["passes_after_failure"] == 1

    dry = await retention.prune(db, 90 * DAY, dry_run=True)
    assert (dry.jobs, dry.groups, dry.submissions) == (5, 2, 1)
    assert dry.attempts == 4  # the cancelled job never ran
    assert counts(db_url)["jobs"] == 9, "a dry run deletes nothing"

    done = await retention.prune(db, 90 * DAY, batch_size=2)
    assert (done.jobs, done.attempts, done.groups, done.submissions) == (5, 4, 2, 1)
    assert done.batches == 3 + 1 + 1  # 2 + 2 + 1 jobs, then 2 groups, then 1 key
    assert {r["id"] for r in sql(db_url, "SELECT id FROM jobs")} == live_ids
    statuses = {str(r["id"]): r["status"] for r in sql(db_url, "SELECT id, status FROM jobs")}
    assert statuses[pending["id"]] == "pending"
    assert statuses[running["id"]] == "running"
    assert sql(db_url, "SELECT count(*) AS n FROM attempts WHERE job_id <> ALL(%(ids)s)", {"ids": list(live_ids)}) == [
        {"n": 0}
    ]
    assert_same_reports(before, reports(db_url))
    job = await api.call("GET", f"/jobs/{running['id']}")
    assert job["status"] == "running"

    again = await retention.prune(db, 90 * DAY)
    assert (again.jobs, again.attempts, again.groups, again.submissions) == (0, 0, 0, 0)
    assert_same_reports(before, reports(db_url))


async def test_a_group_outliving_some_of_its_jobs_keeps_its_install_and_test_time(
    api: Api, db: Database, db_url: str
) -> None:
    """A job pruned from a group that stays (another of its jobs is recent): the group's installs, install
    time and test time in reporting.app_versions still count the pruned attempt, before and after the group
    itself is pruned."""
    agent = await api.register()
    first = await api.submit(test_path="a.spec.ts", priority="high")
    await api.submit(test_path="b.spec.ts")
    await run_group(api, agent, {"a.spec.ts": 0, "b.spec.ts": 1})
    backdate(db_url, f"id = '{first['id']}'", 100 * DAY)  # its attempt started before the group's claim: fine
    before = reports(db_url)

    done = await retention.prune(db, 90 * DAY)
    assert (done.jobs, done.attempts, done.groups) == (1, 1, 0)
    assert sql(db_url, "SELECT count(*) AS n FROM reporting.group_attempts_pruned") == [{"n": 1}]
    assert_same_reports(before, reports(db_url))

    backdate(db_url, "true", 100 * DAY)
    backdate_groups(db_url, "true", 100 * DAY)
    before = reports(db_url)
    done = await retention.prune(db, 90 * DAY)
    assert (done.jobs, done.groups) == (1, 1)
    assert counts(db_url) == {"jobs": 0, "attempts": 0, "job_groups": 0, "submissions": 0}
    assert sql(db_url, "SELECT count(*) AS n FROM reporting.group_attempts_pruned") == [{"n": 0}]
    assert_same_reports(before, reports(db_url))


def test_ninety_days_of_history_pruned_to_the_last_thirty_reports_the_same(db_url: str) -> None:
    """reporting_bench's history (50 orgs, 90 days, retries, re-runs, cancels, live work), 15,000 jobs: after
    pruning everything older than 30 days in batches of 500, every view over all time and over the last 60
    days says the same, but for medians, which become estimates. (Pruned jobs are remembered by UTC day, so
    a window counts them exactly when it starts at midnight UTC.)"""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute(FILL.replace("{jobs}", "15000").replace("{groups}", "1000"))  # type: ignore[call-overload]
    sql(db_url, "ANALYZE")
    before, before_window = reports(db_url), reports(db_url, SIXTY_DAYS)
    total = counts(db_url)

    report = asyncio.run(_prune(db_url, 30 * DAY, 500))
    assert report.jobs > 9_000
    assert report.groups > 600
    assert report.batches > report.jobs // 500
    left = counts(db_url)
    assert left["jobs"] == total["jobs"] - report.jobs
    assert left["attempts"] == total["attempts"] - report.attempts
    oldest = sql(db_url, "SELECT min(finished_at) AS t FROM jobs")[0]["t"]
    assert oldest >= dt.datetime.now(dt.UTC) - 30 * DAY - dt.timedelta(minutes=1)
    live = sql(db_url, "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')")[0]["n"]
    assert live == 720 * 14
    assert_same_reports(before, reports(db_url))
    assert_same_reports(before_window, reports(db_url, SIXTY_DAYS))


async def _prune(url: str, age: dt.timedelta, batch: int) -> retention.PruneReport:
    async with Database(url, size=2) as db:
        return await retention.prune(db, age, batch_size=batch)


async def test_a_server_gives_way_to_a_pruner_at_work(db: Database, db_url: str) -> None:
    with psycopg.connect(libpq_url(db_url)) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('qualgent.prune'))")
        busy = await retention.prune(db, 90 * DAY, wait_for_lock=False)
        assert busy.skipped
        assert busy.batches == 0
    free = await retention.prune(db, 90 * DAY, wait_for_lock=False)
    assert not free.skipped


async def test_every_server_prunes_by_itself(api: Api, db: Database, db_url: str) -> None:
    agent = await api.register()
    await api.submit(test_path="a.spec.ts")
    await run_group(api, agent, {"a.spec.ts": 0})
    backdate(db_url, "true", 100 * DAY)
    loop = asyncio.create_task(retention.prune_loop(db, 90, interval=3600, first_delay=0))
    try:
        for _ in range(100):
            if counts(db_url)["jobs"] == 0:
                break
            await asyncio.sleep(0.05)
        assert counts(db_url)["jobs"] == 0
    finally:
        loop.cancel()
    # Retention 0 keeps everything: no loop at all, the call returns at once (a loop would time out here).
    await asyncio.wait_for(retention.prune_loop(db, 0), 5)
