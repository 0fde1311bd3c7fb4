"""Long-poll and bulk waits wake on the job's final commit, through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from tests.eventually import parked
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio

METRICS = "/api/monitoring/metrics"


async def test_a_long_poll_returns_as_soon_as_the_job_is_final(api: Api) -> None:
    job = await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    waiter = asyncio.create_task(api.call("GET", f"/jobs/{job['id']}/wait", timeout=20))
    await parked(api.client, jobs=1, path=METRICS)
    assert not waiter.done()
    await api.run(agent, claim, job["id"], 0)
    finished = time.monotonic()
    waited = await asyncio.wait_for(waiter, 10)
    assert waited["status"] == "completed"
    assert time.monotonic() - finished < 5, "the commit wakes the long-poll, not its timeout"


async def test_a_long_poll_answers_with_the_current_state_at_its_timeout(api: Api) -> None:
    job = await api.submit()
    waited = await api.call("GET", f"/jobs/{job['id']}/wait", timeout=0.3)
    assert waited["status"] == "pending"


async def test_bulk_wait_answers_at_once_for_unknown_states_then_on_a_change(api: Api) -> None:
    first = await api.submit(test_path="a.spec.ts")
    second = await api.submit(test_path="b.spec.ts")
    snapshot = await api.call("POST", "/jobs/wait", {"jobs": {first["id"]: None, second["id"]: None}, "timeout": 5})
    assert snapshot["changed"] is True
    assert {j["status"] for j in snapshot["jobs"]} == {"pending"}
    assert snapshot["groups_ahead"] == {first["id"]: 0, second["id"]: 0}

    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    known = {first["id"]: "pending", second["id"]: "pending"}
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    waiter = asyncio.create_task(api.call("POST", "/jobs/wait", {"jobs": known, "timeout": 20}))
    await parked(api.client, jobs=1, path=METRICS)
    assert not waiter.done()
    await api.call("POST", f"/agents/{agent}/jobs/{first['id']}/start", ref)
    answer = await asyncio.wait_for(waiter, 10)
    assert answer["changed"] is True
    assert {j["id"]: j["status"] for j in answer["jobs"]}[first["id"]] == "running"


async def test_bulk_wait_names_unknown_jobs(api: Api) -> None:
    missing = "00000000-0000-4000-8000-000000000001"
    body = await api.call("POST", "/jobs/wait", {"jobs": {missing: None}}, expect=404)
    assert missing in body["detail"]


async def test_an_idle_agent_is_woken_by_a_submission(api: Api) -> None:
    agent = await api.register()
    started = time.monotonic()
    claiming = asyncio.create_task(api.call("POST", f"/agents/{agent}/claim", {"wait": 20}))
    await parked(api.client, waiters=1, path=METRICS)
    assert not claiming.done()
    job = await api.submit()
    claim = await asyncio.wait_for(claiming, 10)
    assert [j["id"] for j in claim["jobs"]] == [job["id"]]
    assert time.monotonic() - started < 5


async def test_a_waiter_gets_the_final_state_after_the_listen_connection_is_killed(api: Api, db_url: str) -> None:
    job = await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    waiter = asyncio.create_task(api.call("GET", f"/jobs/{job['id']}/wait", timeout=25))
    await parked(api.client, jobs=1, path=METRICS)
    conninfo = libpq_url(db_url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        killed = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert (await killed.fetchall()) == [(True,)]
    await api.run(agent, claim, job["id"], 1)
    started = time.monotonic()
    answer = await asyncio.wait_for(waiter, 25)
    assert answer["status"] == "failed"
    assert time.monotonic() - started < 5, "the reconnect must wake the waiter, not its safety re-check"


async def test_the_same_idempotency_key_returns_the_same_jobs(api: Api) -> None:
    body = [{"org_id": "acme", "app_version_id": "v1", "test_path": "a.spec.ts"}]
    headers = {"Idempotency-Key": "ci-run-42-1"}
    first = await api.client.post("/api/jobs", json=body, headers=headers)
    again = await api.client.post("/api/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [j["id"] for j in again.json()] == [j["id"] for j in first.json()]
    assert len(await api.call("GET", "/jobs")) == 1
    other = await api.client.post("/api/jobs", json=[{**body[0], "test_path": "b.spec.ts"}], headers=headers)
    assert other.status_code == 409
    assert "idempotency key" in other.json()["detail"]


async def test_concurrent_submissions_with_one_key_make_the_jobs_once(api: Api) -> None:
    body = [{"org_id": "acme", "app_version_id": "v1", "test_path": f"t{i}.spec.ts"} for i in range(50)]
    answers = await asyncio.gather(
        *(api.client.post("/api/jobs", json=body, headers={"Idempotency-Key": "same"}) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({tuple(j["id"] for j in a.json()) for a in answers}) == 1
    assert len(await api.call("GET", "/jobs", limit=1000)) == 50


async def _read_events(
    api: Api,
    params: dict[str, Any],
    enough: Callable[[list[dict[str, Any]]], bool],
    found: list[dict[str, Any]],
    subscribed: asyncio.Event,
) -> None:
    """The stream's job events into `found` until `enough(found)`; `subscribed` is set by the stream's own
    ": subscribed" comment, from which on the server misses no change."""
    async with api.client.stream("GET", "/api/events", params=params, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith(": subscribed"):
                subscribed.set()
            elif line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "job":
                found.append(json.loads(line.removeprefix("data: ")))
                if enough(found):
                    return


async def test_server_sent_events_follow_an_orgs_jobs(api: Api) -> None:
    found: list[dict[str, Any]] = []
    subscribed = asyncio.Event()
    reader = asyncio.create_task(_read_events(api, {"org_id": "acme"}, lambda f: len(f) >= 2, found, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    await api.submit(org_id="other")
    job = await api.submit(org_id="acme")
    await api.call("DELETE", f"/jobs/{job['id']}")
    await asyncio.wait_for(reader, 10)
    assert [(e["id"], e["status"]) for e in found] == [(job["id"], "pending"), (job["id"], "cancelled")]


async def test_an_event_stream_filtered_by_job_starts_with_its_current_state(api: Api) -> None:
    """The stream's first event is the job as it is; the submit's own notification may still be on its way when
    the stream starts (a busy machine), so "pending" can come twice, always before the cancel's (notifications
    arrive in commit order): what counts is the order of states."""
    job = await api.submit()
    found: list[dict[str, Any]] = []
    subscribed = asyncio.Event()

    def cancelled(events: list[dict[str, Any]]) -> bool:
        return events[-1]["status"] == "cancelled"

    reader = asyncio.create_task(_read_events(api, {"job_id": job["id"]}, cancelled, found, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    await api.call("DELETE", f"/jobs/{job['id']}")
    await asyncio.wait_for(reader, 10)
    states = [e["status"] for e in found]
    assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == ["pending", "cancelled"]
