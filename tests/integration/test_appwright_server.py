"""What the server does for `qgjob agent --appwright`: tries a runner retries in place, error locations, final
failures, the run's job watch, and the BrowserStack apps every agent shares."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from qualgent.server.queue.browserstack import custom_id
from tests.eventually import parked
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def _claimed(api: Api, tests: list[str], **extra: Any) -> tuple[str, dict[str, Any]]:
    for path in tests:
        await api.submit(test_path=path, **extra)
    agent_id = await api.register()
    claim = await api.claim(agent_id)
    assert claim is not None
    return agent_id, claim


def _progress(agent_id: str, claim: dict[str, Any]) -> str:
    return f"/agents/{agent_id}/groups/{claim['group_id']}/progress"


async def test_a_try_retried_in_the_run_is_an_attempt_and_the_pass_after_it_is_flaky(api: Api) -> None:
    agent_id, claim = await _claimed(api, ["specs/cart.spec.ts"], test_retries=1)
    (job_id,) = [j["id"] for j in claim["jobs"]]
    body = {
        "token": claim["token"],
        "started": [{"job_id": job_id, "elapsed_ms": 900}],
        "results": [  # the same job twice in one report: its failed try, then its end
            {"job_id": job_id, "exit_code": 1, "duration_ms": 400, "error": "syncs the cart: boom",
             "error_location": "specs/cart.spec.ts:10", "retrying": True},
            {"job_id": job_id, "exit_code": 0, "duration_ms": 300},
        ],
    }  # fmt: skip
    answer = await api.call("POST", _progress(agent_id, claim), body)
    assert answer["refused"] == []
    job = await api.call("GET", f"/jobs/{job_id}")
    assert (job["status"], job["attempts"], job["flaky"]) == ("completed", 2, True)
    assert job["result"]["error_location"] is None
    history = job["attempt_history"]
    assert [a["outcome"] for a in history] == ["test_failed", "passed"]
    assert history[0]["error_location"] == "specs/cart.spec.ts:10"
    assert history[0]["group_id"] == history[1]["group_id"] == claim["group_id"]


async def test_a_failure_keeps_its_location_and_a_final_one_is_not_retried(api: Api) -> None:
    agent_id, claim = await _claimed(api, ["specs/a.spec.ts", "specs/none.spec.ts"], test_retries=2)
    located, empty = (j["id"] for j in claim["jobs"])
    results = [
        {"job_id": located, "exit_code": 1, "error": "checks out: expected 4", "error_location": "specs/a.spec.ts:8"},
        {"job_id": empty, "exit_code": 1, "error": "specs/none.spec.ts holds no test", "final": True},
    ]
    started = [{"job_id": j, "elapsed_ms": 5} for j in (located, empty)]
    await api.call(
        "POST", _progress(agent_id, claim), {"token": claim["token"], "started": started, "results": results}
    )
    first = await api.call("GET", f"/jobs/{located}")
    assert first["status"] == "pending"  # test_retries: retried with backoff (its location kept meanwhile)
    assert first["result"]["error_location"] == "specs/a.spec.ts:8"
    assert first["attempt_history"][0]["error_location"] == "specs/a.spec.ts:8"
    second = await api.call("GET", f"/jobs/{empty}")
    assert (second["status"], second["attempts"]) == ("failed", 1)


async def test_the_run_watch_answers_the_jobs_retries_and_wakes_on_a_cancel(api: Api) -> None:
    agent_id, claim = await _claimed(api, ["specs/a.spec.ts", "specs/b.spec.ts"], test_retries=1, timeout_seconds=90)
    ids = [j["id"] for j in claim["jobs"]]
    now = await api.call("POST", f"/agents/{agent_id}/jobs/wait", {"jobs": [{"id": i} for i in ids], "timeout": 0})
    assert {(j["status"], j["test_retries"], j["timeout_seconds"]) for j in now} == {("pending", 1, 90)}
    known = {"jobs": [{"id": i, "status": "pending"} for i in ids], "timeout": 10}
    watch = asyncio.create_task(api.call("POST", f"/agents/{agent_id}/jobs/wait", known))
    await parked(api.client, jobs=1, path="/api/monitoring/metrics")
    assert not watch.done()
    await api.call("DELETE", f"/jobs/{ids[1]}")
    answer = await asyncio.wait_for(watch, 5)
    assert {j["id"]: j["status"] for j in answer} == {ids[0]: "pending", ids[1]: "cancelled"}
    await api.call("POST", f"/agents/{agent_id}/jobs/wait", {"jobs": []}, expect=400)


async def test_one_agent_uploads_a_browserstack_build_and_every_agent_gets_its_id(api: Api, db_url: str) -> None:
    first, second = await api.register("a", ["browserstack"]), await api.register("b", ["browserstack"])
    key = {"org_id": "acme", "app_version_id": "v1.2+build 7"}
    lease = await api.call("POST", f"/agents/{first}/browserstack-apps/upload-lease", key)
    assert lease["custom_id"] == custom_id("acme", "v1.2+build 7")
    assert "upload_token" in lease
    waiting = await api.call("POST", f"/agents/{second}/browserstack-apps/upload-lease", key)
    assert "upload_token" not in waiting
    assert waiting["wait_seconds"] > 0  # the other agent uploads it: wait, do not upload it twice
    stale = {**key, "upload_token": "00000000-0000-0000-0000-000000000000", "app_url": "bs://x"}
    await api.call("PUT", f"/agents/{second}/browserstack-apps", stale, expect=409)
    done = {**key, "upload_token": lease["upload_token"], "app_url": "bs://abc123"}
    await api.call("PUT", f"/agents/{first}/browserstack-apps", done)
    got = await api.call("POST", f"/agents/{second}/browserstack-apps/upload-lease", key)
    assert got["app_url"] == "bs://abc123"
    # Renewed before BrowserStack's 30-day expiry: an upload 28 days old is uploaded again.
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("UPDATE browserstack_apps SET uploaded_at = now() - interval '28 days'")
    renew = await api.call("POST", f"/agents/{second}/browserstack-apps/upload-lease", key)
    assert "upload_token" in renew
    await api.call("PUT", f"/agents/{second}/browserstack-apps", {**key, "upload_token": renew["upload_token"],
                                                                   "app_url": "bs://def456"})  # fmt: skip
    # BrowserStack says the app is gone: the next run uploads it again.
    gone = await api.call("POST", f"/agents/{first}/browserstack-apps/gone", {**key, "app_url": "bs://def456"})
    assert gone == {"forgotten": True}
    assert "upload_token" in await api.call("POST", f"/agents/{first}/browserstack-apps/upload-lease", key)


def test_custom_ids_are_what_browserstack_accepts() -> None:
    long = custom_id("org with spaces/and:colons", "v" * 300)
    assert len(long) <= 100
    assert all(c.isalnum() or c in "._-" for c in long)
    assert custom_id("a", "b-c") != custom_id("a-b", "c")
