"""Tokens, roles and tenancy, as a caller of the HTTP API sees them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import psycopg
import pytest

from qualgent.agent.client import AgentClient, ServerConflict, ServerRejected
from qualgent.server.db.engine import libpq_url
from qualgent.server.settings import Settings
from tests.eventually import until
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio

ADMIN = "admin-secret-for-tests"
MISSING = "00000000-0000-4000-8000-000000000000"


class Caller:
    """One credential speaking to the API."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200, **params: Any) -> Any:
        response = await self.client.request(
            method, f"/api{path}", json=body, params=params or None, headers=self.headers
        )
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def submit(self, org_id: str, expect: int = 201, **job: Any) -> Any:
        body = {"org_id": org_id, "app_version_id": "v1", "test_path": "tests/a.spec.ts", **job}
        return await self.call("POST", "/jobs", body, expect=expect)


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return replace(settings, admin_token=ADMIN, rate_limit=0)


@pytest.fixture
async def api(secured: Settings) -> AsyncIterator[Api]:
    async with serve_api(secured) as served:
        yield served


@pytest.fixture
def admin(api: Api) -> Caller:
    return Caller(api.client, ADMIN)


async def make_token(admin: Caller, role: str, org_id: str | None = None) -> str:
    body = {"role": role, **({"org_id": org_id} if org_id else {})}
    made = await admin.call("POST", "/tokens", body, expect=201)
    return str(made["token"])


async def test_no_token_or_a_wrong_one_is_401_and_health_metrics_and_schema_stay_open(api: Api) -> None:
    anonymous = Caller(api.client, None)
    for token in (None, "wrong", "qgt_" + "x" * 43, "Basic abc"):
        caller = Caller(api.client, token)
        body = await caller.call("GET", "/jobs", expect=401)
        assert body["status_code"] == 401
        assert "token" in body["detail"]
    response = await api.client.get("/api/jobs")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    response = await api.client.get("/api/jobs", headers={"Authorization": "Basic " + ADMIN})
    assert response.status_code == 401
    assert (await anonymous.call("GET", "/health"))["status"] == "ok"
    assert (await anonymous.call("GET", "/schema/openapi.json"))["info"]["title"] == "qualgent"
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    await anonymous.call("PUT", "/orgs/acme", {"tier": "premium"}, expect=401)
    await anonymous.call("POST", "/agents", {"name": "a"}, expect=401)


async def test_tokens_are_stored_hashed_listed_without_secrets_and_revoked_at_once(
    api: Api, admin: Caller, db_url: str
) -> None:
    made = await admin.call("POST", "/tokens", {"role": "submitter", "org_id": "acme", "name": "ci"}, expect=201)
    secret = made["token"]
    assert secret.startswith("qgt_")
    assert len(secret) >= 40
    assert made["prefix"] == secret[:12]
    listed = await admin.call("GET", "/tokens")
    assert [t["id"] for t in listed] == [made["id"]]
    assert secret not in json.dumps(listed)

    conninfo = libpq_url(db_url)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT * FROM api_tokens").fetchall()
    assert secret not in repr(rows)
    assert hashlib.sha256(secret.encode()).hexdigest() in repr(rows)

    submitter = Caller(api.client, secret)
    await submitter.submit("acme")
    revoked = await admin.call("DELETE", f"/tokens/{made['id']}")
    assert revoked["revoked_at"] is not None
    await submitter.call("GET", "/jobs", expect=401)
    assert await admin.call("GET", "/tokens") == []
    assert [t["id"] for t in await admin.call("GET", "/tokens", include_revoked=True)] == [made["id"]]
    await admin.call("DELETE", f"/tokens/{MISSING}", expect=404)


async def _token_checks(api: Api) -> dict[str, float]:
    """qualgent_token_checks_total by source, as /metrics shows it."""
    text = (await api.client.get("/metrics")).text
    found = re.findall(r'^qualgent_token_checks_total\{source="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {"memory": 0.0, "database": 0.0, **{source: float(value) for source, value in found}}


async def _refused_within(caller: Caller, seconds: float) -> float:
    """Poll until the caller's token is refused; how long that took (fails after `seconds`)."""
    started = time.monotonic()
    while (await caller.client.get("/api/jobs", headers=caller.headers)).status_code != 401:
        assert time.monotonic() - started < seconds, f"the revoked token was still accepted after {seconds}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_live_token_is_checked_in_memory_and_a_revoke_made_elsewhere_reaches_it_within_moments(
    api: Api, admin: Caller, db_url: str
) -> None:
    """The server keeps live tokens it has seen; a revoke made by another server (or by hand, in SQL) is announced
    by the trigger on api_tokens, and this server refuses the token as soon as the notification lands, long
    before the cache's own expiry (10 s) would."""
    made = await admin.call("POST", "/tokens", {"role": "submitter", "org_id": "acme"}, expect=201)
    submitter = Caller(api.client, made["token"])
    before = await _token_checks(api)
    for _ in range(5):
        await submitter.call("GET", "/jobs")
    after = await _token_checks(api)
    assert after["database"] - before["database"] == 1
    assert after["memory"] - before["memory"] >= 4

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s", (made["id"],))
    assert await _refused_within(submitter, 3.0) < 3.0


async def test_tokens_cached_before_the_listen_connection_was_lost_are_read_again_after_it(
    api: Api, admin: Caller, db_url: str
) -> None:
    """A revoke whose notification was lost with the LISTEN connection: once the hub is back, nothing it cached
    before is trusted, so the revoked token is refused."""
    made = await admin.call("POST", "/tokens", {"role": "submitter", "org_id": "acme"}, expect=201)
    submitter = Caller(api.client, made["token"])
    await submitter.call("GET", "/jobs")
    await submitter.call("GET", "/jobs")  # from memory now
    listening = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'qgjob server listen' AND query = 'LISTEN qualgent'"
    )
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        old = conn.execute(listening).fetchall()
        assert len(old) == 1
        conn.execute("SELECT pg_terminate_backend(%s)", (old[0][0],))
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s", (made["id"],))  # heard by no one
        deadline = time.monotonic() + 10
        while not (now := conn.execute(listening).fetchall()) or now == old:
            assert time.monotonic() < deadline, "the server did not listen again"
            await asyncio.sleep(0.02)  # the server runs in this event loop

    async def connected() -> bool:
        return bool((await admin.call("GET", "/monitoring/metrics"))["listen"]["connected"])

    await until(connected, what="the hub to mark itself connected (right after its LISTEN)")
    await submitter.call("GET", "/jobs", expect=401)


async def test_a_token_request_that_makes_no_sense_is_a_400_naming_the_field(admin: Caller) -> None:
    for body, field in [
        ({"role": "submitter"}, "org_id"),
        ({"role": "agent", "org_id": "acme"}, "org_id"),
        ({"role": "admin"}, "role"),
        ({"role": "submitter", "org_id": "a" * 10_000}, "org_id"),
    ]:
        answer = await admin.call("POST", "/tokens", body, expect=400)
        assert field in json.dumps(answer), answer


async def test_one_org_cannot_see_or_touch_another_orgs_jobs(api: Api, admin: Caller) -> None:
    alpha = Caller(api.client, await make_token(admin, "submitter", "alpha"))
    beta = Caller(api.client, await make_token(admin, "submitter", "beta"))
    theirs = await alpha.submit("alpha")
    mine = await beta.submit("beta")

    # Reading, waiting on, cancelling or re-queueing another org's job: exactly the 404 of a missing job.
    missing = await beta.call("GET", f"/jobs/{MISSING}", expect=404)
    hidden = await beta.call("GET", f"/jobs/{theirs['id']}", expect=404)
    assert hidden == {**missing, "detail": missing["detail"].replace(MISSING, theirs["id"]), "extra": hidden["extra"]}
    await beta.call("GET", f"/jobs/{theirs['id']}/wait", expect=404, timeout=0)
    await beta.call("POST", "/jobs/wait", {"jobs": {theirs["id"]: None}, "timeout": 0}, expect=404)
    await beta.call("DELETE", f"/jobs/{theirs['id']}", expect=404)
    await beta.call("PUT", f"/jobs/{theirs['id']}/status", {"status": "cancelled"}, expect=404)
    await beta.call("GET", "/orgs/alpha", expect=404)
    assert (await alpha.call("GET", f"/jobs/{theirs['id']}"))["status"] == "pending"

    # Listing: only its own org, and asking for another is refused.
    assert [j["id"] for j in await beta.call("GET", "/jobs")] == [mine["id"]]
    refused = await beta.call("GET", "/jobs", expect=403, org_id="alpha")
    assert refused["extra"][0]["key"] == "org_id"

    # Submitting for another org, alone or inside a bulk list: 403 naming the field, nothing queued.
    refused = await beta.submit("alpha", expect=403)
    assert refused["extra"][0]["key"] == "org_id"
    bulk = [
        {"org_id": "beta", "app_version_id": "v1", "test_path": "a.ts"},
        {"org_id": "alpha", "app_version_id": "v1", "test_path": "b.ts"},
    ]
    refused = await beta.call("POST", "/jobs", bulk, expect=403)
    assert refused["extra"][0]["key"] == "[1].org_id"
    assert len(await admin.call("GET", "/jobs")) == 2

    # Its own jobs: everything works.
    assert (await beta.call("DELETE", f"/jobs/{mine['id']}"))["status"] == "cancelled"
    assert (await beta.call("GET", f"/jobs/{mine['id']}/wait", timeout=0))["status"] == "cancelled"
    assert (await beta.call("GET", "/orgs/beta"))["tier"] == "standard"


async def test_the_event_stream_of_a_submitter_carries_only_its_own_orgs_jobs(api: Api, admin: Caller) -> None:
    alpha = Caller(api.client, await make_token(admin, "submitter", "alpha"))
    beta = Caller(api.client, await make_token(admin, "submitter", "beta"))
    theirs = await alpha.submit("alpha")
    mine = await beta.submit("beta")
    await beta.call("GET", "/events", expect=403, org_id="alpha")

    seen: list[tuple[str, str]] = []
    params = [("job_id", theirs["id"]), ("job_id", mine["id"])]
    async with api.client.stream("GET", "/api/events", params=params, headers=beta.headers) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        # The opening state of the jobs asked for, then (after a cancel) a change: all of beta's own.
        seen.append(await asyncio.wait_for(_next_job_event(lines), 10))
        await beta.call("DELETE", f"/jobs/{mine['id']}")
        while seen[-1] != (mine["id"], "cancelled"):
            seen.append(await asyncio.wait_for(_next_job_event(lines), 10))
    assert seen == [(mine["id"], "pending"), (mine["id"], "cancelled")]


async def _next_job_event(lines: AsyncIterator[str]) -> tuple[str, str]:
    async for line in lines:
        if line.startswith("data:"):
            event = json.loads(line.removeprefix("data:"))
            return event["id"], event["status"]
    raise AssertionError("the stream ended")


async def test_submitters_cannot_do_agent_work_and_agents_cannot_touch_jobs(api: Api, admin: Caller) -> None:
    submitter = Caller(api.client, await make_token(admin, "submitter", "acme"))
    agent = Caller(api.client, await make_token(admin, "agent"))
    job = await submitter.submit("acme")

    refused = await submitter.call("POST", "/agents", {"name": "sneaky"}, expect=403)
    assert "submitter" in refused["detail"]
    for method, path, body in [
        ("GET", "/agents", None),
        ("PUT", "/orgs/acme", {"tier": "premium"}),
        ("GET", "/orgs", None),
        ("POST", "/tokens", {"role": "agent"}),
        ("GET", "/tokens", None),
        ("GET", "/jobs/queue/status", None),
        ("GET", "/monitoring/metrics", None),
    ]:
        await submitter.call(method, path, body, expect=403)

    agent_id = (await agent.call("POST", "/agents", {"name": "host-1"}, expect=201))["id"]
    claim = await agent.call("POST", f"/agents/{agent_id}/claim", {})
    assert [j["id"] for j in claim["jobs"]] == [job["id"]]
    await agent.call("PUT", f"/agents/{agent_id}/heartbeat", {"claims": []})
    for method, path, body in [
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{job['id']}", None),
        ("DELETE", f"/jobs/{job['id']}", None),
        ("POST", "/jobs", {"org_id": "acme", "app_version_id": "v1", "test_path": "x.ts"}),
        ("POST", "/tokens", {"role": "agent"}),
        ("PUT", "/orgs/acme", {"tier": "premium"}),
    ]:
        await agent.call(method, path, body, expect=403)
    assert (await admin.call("GET", f"/jobs/{job['id']}"))["status"] == "pending"


async def test_the_admin_sets_tiers_and_lists_orgs(admin: Caller) -> None:
    await admin.call("PUT", "/orgs/gold", {"tier": "premium"})
    await admin.call("PUT", "/orgs/plain", {"tier": "standard"})
    assert {o["id"]: o["tier"] for o in await admin.call("GET", "/orgs")} == {"gold": "premium", "plain": "standard"}


async def test_tokens_never_reach_the_logs(api: Api, admin: Caller, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = await make_token(admin, "submitter", "acme")
    caller = Caller(api.client, secret)
    await caller.submit("acme")
    await caller.call("GET", "/jobs", org_id="other", expect=403)
    await Caller(api.client, secret + "x").call("GET", "/jobs", expect=401)
    await Caller(api.client, ADMIN + "x").call("GET", "/jobs", expect=401)
    assert caplog.records, "the test should see the server's logs"
    assert secret not in caplog.text
    assert ADMIN not in caplog.text


async def test_a_token_over_its_rate_is_429_with_retry_after_and_others_are_not_slowed(settings: Settings) -> None:
    limited = replace(settings, admin_token=ADMIN, rate_limit=0.5, rate_burst=3)
    async with serve_api(limited) as served:
        admin = Caller(served.client, ADMIN)
        flooder = Caller(served.client, await make_token(admin, "submitter", "flood"))
        quiet = Caller(served.client, await make_token(admin, "submitter", "quiet"))
        for _ in range(3):
            await flooder.call("GET", "/jobs")
        response = await served.client.get("/api/jobs", headers=flooder.headers)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["status_code"] == 429
        await quiet.call("GET", "/jobs")


async def test_the_agents_client_presents_its_token_sends_json_and_reads_every_kind_of_answer(
    api: Api, admin: Caller
) -> None:
    """The agent's own HTTP client (httpx's transport, without AsyncClient) against the real server: its token,
    its JSON bodies, a 204, a 409 and a 401 as the agent loop relies on them."""
    url = str(api.client.base_url.join("/api"))
    agent = AgentClient(url, await make_token(admin, "agent"))
    stranger = AgentClient(url, "qgt_" + "x" * 43)
    try:
        registered = await agent.call("POST", "/agents", {"name": "device-1", "targets": ["emulator"]})
        assert registered["name"] == "device-1"
        agent_id = registered["id"]
        assert await agent.call("POST", f"/agents/{agent_id}/claim", {"wait": 0}) is None  # 204: nothing queued
        await admin.submit("acme")
        claim = await agent.call("POST", f"/agents/{agent_id}/claim", {"wait": 0})
        assert [j["test_path"] for j in claim["jobs"]] == ["tests/a.spec.ts"]
        stale = {"token": MISSING, "started": [{"job_id": claim["jobs"][0]["id"]}]}
        with pytest.raises(ServerConflict) as conflict:
            await agent.call("POST", f"/agents/{agent_id}/groups/{claim['group_id']}/progress", stale)
        assert conflict.value.stale_claim
        with pytest.raises(ServerRejected, match="401"):
            await stranger.call("POST", f"/agents/{agent_id}/claim", {"wait": 0})
    finally:
        await agent.close()
        await stranger.close()
