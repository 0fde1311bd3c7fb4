"""What the claim knows besides tier, priority and age (migration 0015): capacity caps per target and per org,
never exceeded by concurrent claims on two servers; the aging bound; fair share among orgs of one tier; the build
an agent holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import history
from qualgent.server.settings import Settings
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two_servers(settings: Settings) -> AsyncIterator[tuple[Api, Api]]:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(serve_api(settings))
        second = await stack.enter_async_context(serve_api(settings))
        yield first, second


async def _claims_at_once(servers: tuple[Api, Api], agents: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every agent claims at the same time, half of them through each server: (agent, claim) of those that got one."""

    async def one(i: int, agent: str) -> tuple[str, dict[str, Any]] | None:
        response = await servers[i % 2].client.post(f"/api/agents/{agent}/claim", json={})
        assert response.status_code in (200, 204), response.text
        return (agent, response.json()) if response.status_code == 200 else None

    got = await asyncio.gather(*(one(i, agent) for i, agent in enumerate(agents)))
    return [claim for claim in got if claim is not None]


async def _finish(api: Api, agent: str, claim: dict[str, Any]) -> None:
    for job in claim["jobs"]:
        await api.run(agent, claim, job["id"], 0)


async def _idle(api: Api) -> list[str]:
    return [a["id"] for a in await api.call("GET", "/agents") if a["status"] == "idle"]


async def test_a_target_cap_holds_under_concurrent_claims_from_two_servers(two_servers: tuple[Api, Api]) -> None:
    api, other = two_servers
    capped = await api.call("PUT", "/targets/emulator", {"max_running": 3})
    assert capped == {"target": "emulator", "max_running": 3, "running": 0, "pending": 0, "agents_online": 0}
    for version in range(12):
        await api.submit(app_version_id=f"v{version}")
    agents = [await api.register(f"a{i}", ["emulator"]) for i in range(12)]

    holders = await _claims_at_once((api, other), agents)
    assert len(holders) == 3, holders
    for _ in range(4):  # a group ends, the idle agents all claim at once: one of them gets the free slot
        agent, claim = holders.pop()
        await _finish(api, agent, claim)
        got = await _claims_at_once((other, api), await _idle(api))
        assert len(got) == 1, got
        holders += got
    listed = {t["target"]: t for t in await other.call("GET", "/targets")}
    assert listed["emulator"] == {
        "target": "emulator",
        "max_running": 3,
        "running": 3,
        "pending": 5,
        "agents_online": 12,
    }
    assert listed["device"]["max_running"] is None
    await api.call("PUT", "/targets/emulator", {"max_running": None})
    assert len(await _claims_at_once((api, other), await _idle(api))) == 5  # no cap now: idle agents take the rest


async def test_an_org_cap_holds_and_other_orgs_still_run(two_servers: tuple[Api, Api]) -> None:
    api, other = two_servers
    capped = await api.call("PUT", "/orgs/acme", {"max_running": 1})
    assert (capped["id"], capped["tier"], capped["max_running"]) == ("acme", "standard", 1)
    for version in range(4):
        await api.submit(org_id="acme", app_version_id=f"v{version}")
    await api.submit(org_id="globex", app_version_id="g1")
    agents = [await api.register(f"a{i}") for i in range(5)]
    got = await _claims_at_once((api, other), agents)
    assert sorted(claim["org_id"] for _, claim in got) == ["acme", "globex"]
    # The tier can change without touching the cap, and the cap without touching the tier.
    assert (await api.call("PUT", "/orgs/acme", {"tier": "premium"}))["max_running"] == 1
    assert (await api.call("PUT", "/orgs/acme", {"max_running": 0}))["tier"] == "premium"
    (agent, claim), *_ = [(a, c) for a, c in got if c["org_id"] == "acme"]
    await _finish(api, agent, claim)
    assert await _claims_at_once((api, other), await _idle(api)) == []  # 0: the org is paused
    await api.call("PUT", "/orgs/acme", {"max_running": None})
    assert len(await _claims_at_once((api, other), await _idle(api))) == 3


async def test_caps_refuse_bad_input(api: Api) -> None:
    await api.call("PUT", "/targets/mainframe", {"max_running": 1}, expect=400)
    await api.call("PUT", "/targets/emulator", {"max_running": -1}, expect=400)
    await api.call("PUT", "/targets/emulator", {}, expect=400)
    await api.call("PUT", "/orgs/acme", {}, expect=400)
    await api.call("PUT", "/orgs/acme", {"max_running": "many"}, expect=400)
    assert all(t["max_running"] is None for t in await api.call("GET", "/targets"))


def _age(db_url: str, app_version_id: str, seconds: int) -> None:
    """The group of this app version as if its jobs had been waiting `seconds` already."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE job_groups SET oldest_job_at = oldest_job_at - make_interval(secs => %s) "
            "WHERE app_version_id = %s AND status = 'pending'",
            (seconds, app_version_id),
        )


async def test_a_group_past_the_aging_bound_outranks_every_younger_one(api: Api, db_url: str) -> None:
    await api.call("PUT", "/orgs/gold", {"tier": "premium"})
    await api.submit(org_id="bronze", app_version_id="old-low", priority="low")
    await api.submit(org_id="bronze", app_version_id="older-low", priority="low")
    for n in range(3):
        await api.submit(org_id="gold", app_version_id=f"gold-{n}", priority="high")
    _age(db_url, "old-low", 601)  # past the bound of 600 s
    _age(db_url, "older-low", 900)
    _age(db_url, "gold-2", 599)  # not yet: first of its tier and priority (the oldest), no more
    agent = await api.register()
    order = []
    while (claim := await api.claim(agent, expect=200 if len(order) < 5 else 204)) is not None:
        order.append(claim["app_version_id"])
        await _finish(api, agent, claim)
    # Past the bound: the oldest first, whatever tier and priority; then the usual order.
    assert order == ["older-low", "old-low", "gold-2", "gold-0", "gold-1"]


async def test_orgs_of_one_tier_take_turns(api: Api) -> None:
    for n in range(3):
        await api.submit(org_id="busy", app_version_id=f"b{n}")
    await api.submit(org_id="quiet", app_version_id="q0")
    await api.submit(org_id="quiet", app_version_id="q1")
    agent = await api.register()
    order = []
    while (claim := await api.claim(agent, expect=200 if len(order) < 5 else 204)) is not None:
        order.append(claim["app_version_id"])
        await _finish(api, agent, claim)
    # busy was first (oldest); then the org served least recently each time while both have work
    assert order == ["b0", "q0", "b1", "q1", "b2"]


async def test_a_held_build_goes_first_among_equals(api: Api) -> None:
    await api.submit(app_version_id="v1")
    await api.submit(app_version_id="v2")
    await api.submit(app_version_id="v3", priority="high")
    agent = await api.register()
    held = [{"target": "emulator", "org_id": "acme", "app_version_id": "v2"}]
    first = await api.call("POST", f"/agents/{agent}/claim", {"held_builds": held})
    assert first["app_version_id"] == "v3"  # a better priority still goes first
    await _finish(api, agent, first)
    second = await api.call("POST", f"/agents/{agent}/claim", {"held_builds": held})
    assert second["app_version_id"] == "v2"  # before the older v1: no install
    bad = [{"target": "emulator", "org_id": "acme"}]
    await api.call("POST", f"/agents/{agent}/claim", {"held_builds": bad}, expect=400)


async def test_finished_groups_leave_durations_and_install_times(
    api: Api, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.submit(test_path="a.spec.ts")
    await api.submit(test_path="b-fail.spec.ts")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    a, b = claim["jobs"]
    await api.run(agent, claim, a["id"], 0, duration_ms=4000)
    await api.run(agent, claim, b["id"], 1, duration_ms=8000)
    await history.recorded()  # written beside the report's answer (the server runs in this event loop)
    with psycopg.connect(libpq_url(db_url)) as conn:
        rows = conn.execute(
            "SELECT test_path, runs, mean_ms, last_failed_at IS NOT NULL FROM test_durations ORDER BY test_path"
        ).fetchall()
        assert rows == [("a.spec.ts", 1, 4000.0, False), ("b-fail.spec.ts", 1, 8000.0, True)]
        installs = conn.execute("SELECT org_id, app_version_id, target, install_ms >= 0 FROM build_installs").fetchall()
        assert installs == [("acme", "v1", "emulator", True)]
        # A second passing run within a second of the first is not written (a quick suite writes each test's row
        # about once a second): as if that second had passed.
        conn.execute("UPDATE test_durations SET updated_at = updated_at - interval '2 seconds'")
    # A second run moves the mean toward the new duration (the last ~10 weigh most). A group that passed is one
    # sample among at most ten a second (the server runs in this process): as if a tenth of a second had passed.
    monkeypatch.setattr(history, "_last_started", float("-inf"))
    await api.submit(test_path="a.spec.ts")
    claim = await api.claim(agent)
    assert claim is not None
    await api.run(agent, claim, claim["jobs"][0]["id"], 0, duration_ms=2000)
    await history.recorded()
    with psycopg.connect(libpq_url(db_url)) as conn:
        assert conn.execute("SELECT runs, mean_ms FROM test_durations WHERE test_path = 'a.spec.ts'").fetchone() == (
            2,
            3000.0,
        )


async def test_pending_jobs_carry_their_place_and_eta(api: Api) -> None:
    first = await api.submit(app_version_id="v1")
    second = await api.submit(app_version_id="v2")
    third = await api.submit(app_version_id="v3")
    on_device = await api.submit(app_version_id="v4", target="device")
    assert (await api.call("GET", f"/jobs/{first['id']}"))["queue"] == {
        "groups_ahead": 0,
        "eta_seconds": None,  # no agent online for the target
        "agents_online": 0,
    }
    await api.register("one", ["emulator"])
    await api.register("two", ["emulator"])
    queues = [(await api.call("GET", f"/jobs/{job['id']}"))["queue"] for job in (first, second, third)]
    # Unknown tests count 30 s each; two agents share the work ahead.
    assert queues == [
        {"groups_ahead": 0, "eta_seconds": 0.0, "agents_online": 2},
        {"groups_ahead": 1, "eta_seconds": 15.0, "agents_online": 2},
        {"groups_ahead": 2, "eta_seconds": 30.0, "agents_online": 2},
    ]
    waited = await api.call("POST", "/jobs/wait", {"jobs": {third["id"]: None, on_device["id"]: None}})
    shown = {job["id"]: job["queue"] for job in waited["jobs"]}
    assert shown[on_device["id"]] == {"groups_ahead": 0, "eta_seconds": None, "agents_online": 0}
    assert shown[third["id"]]["groups_ahead"] == 2
    assert waited["groups_ahead"] == {third["id"]: 2, on_device["id"]: 0}
    await api.call("PUT", "/targets/emulator", {"max_running": 1})  # one slot: the work ahead takes twice as long
    assert (await api.call("GET", f"/jobs/{third['id']}"))["queue"]["eta_seconds"] == 60.0


async def test_a_big_group_is_split_for_idle_agents_in_chunks_of_at_least_the_minimum(api: Api) -> None:
    await api.call(
        "POST",
        "/jobs",
        [{"org_id": "acme", "app_version_id": "v1", "test_path": f"t{i}.spec.ts"} for i in range(8)],
        expect=201,
    )
    agents = [await api.register(f"a{i}") for i in range(3)]
    # 8 unknown tests count 30 s each: 240 s, two agents idle beside the claimer, a share of max(120, 80) s.
    first = await api.claim(agents[0])
    assert first is not None
    assert len(first["jobs"]) == 4
    second = await api.claim(agents[1])
    assert second is not None
    assert second["app_version_id"] == "v1"
    assert second["group_id"] != first["group_id"]
    assert len(second["jobs"]) == 4  # 120 s left: less than two chunks, not split again
    assert await api.claim(agents[2], expect=204) is None
    paths = {j["test_path"] for j in first["jobs"]} | {j["test_path"] for j in second["jobs"]}
    assert paths == {f"t{i}.spec.ts" for i in range(8)}


async def test_a_group_runs_recent_failures_first_then_the_longest(api: Api, db_url: str) -> None:
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO test_durations (org_id, target, test_path, runs, mean_ms, last_failed_at) VALUES "
            "('acme', 'emulator', 'quick.spec.ts', 5, 1000, NULL), "
            "('acme', 'emulator', 'slow.spec.ts', 5, 90000, NULL), "
            "('acme', 'emulator', 'broke.spec.ts', 5, 2500, now() - interval '1 hour'), "
            "('acme', 'emulator', 'mid.spec.ts', 5, 2000, now() - interval '3 days')"
        )
    for path in ("quick.spec.ts", "new.spec.ts", "mid.spec.ts", "slow.spec.ts", "broke.spec.ts"):
        await api.submit(test_path=path)
    claim = await api.claim(await api.register())
    assert claim is not None
    # new.spec.ts has no history: the org's median (2,250 ms) puts it after slow, before mid (2,000 ms).
    assert [j["test_path"] for j in claim["jobs"]] == [
        "broke.spec.ts", "slow.spec.ts", "new.spec.ts", "mid.spec.ts", "quick.spec.ts"
    ]  # fmt: skip
