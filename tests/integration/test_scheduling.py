"""The claim as agents see it over HTTP: grouping, order, targets, results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def test_jobs_of_one_app_version_form_one_group_claimed_whole(api: Api) -> None:
    a = await api.submit(app_version_id="v1", test_path="a.spec.ts")
    x = await api.submit(app_version_id="v2", test_path="x.spec.ts")
    b = await api.submit(app_version_id="v1", test_path="b.spec.ts")
    c = await api.submit(app_version_id="v1", test_path="c.spec.ts")
    assert a["group_id"] == b["group_id"] == c["group_id"] != x["group_id"]

    agent = await api.register()
    first = await api.claim(agent)
    assert first is not None
    assert first["app_version_id"] == "v1"
    assert [j["test_path"] for j in first["jobs"]] == ["a.spec.ts", "b.spec.ts", "c.spec.ts"]
    for job in first["jobs"]:
        await api.run(agent, first, job["id"], 0)
    second = await api.claim(agent)
    assert second is not None
    assert second["app_version_id"] == "v2"
    assert [j["id"] for j in second["jobs"]] == [x["id"]]
    await api.run(agent, second, x["id"], 0)
    assert await api.claim(agent, expect=204) is None


async def test_a_job_submitted_while_its_group_runs_starts_a_new_group(api: Api) -> None:
    first = await api.submit(test_path="a.spec.ts")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    late = await api.submit(test_path="late.spec.ts")
    assert late["group_id"] != first["group_id"]
    assert late["status"] == "pending"
    other = await api.register("second")
    taken = await api.claim(other)
    assert taken is not None
    assert [j["id"] for j in taken["jobs"]] == [late["id"]]


async def test_claim_order_is_tier_then_priority_then_oldest(api: Api) -> None:
    await api.call("PUT", "/orgs/gold", {"tier": "premium"})
    await api.call("PUT", "/orgs/silver", {"tier": "enterprise"})
    # Submitted in the reverse of the order they must run in.
    await api.submit(org_id="bronze", app_version_id="old-low", priority="low")
    await api.submit(org_id="bronze", app_version_id="newer-low", priority="low")
    await api.submit(org_id="bronze", app_version_id="medium", priority="medium")
    await api.submit(org_id="bronze", app_version_id="high", priority="high")
    await api.submit(org_id="silver", app_version_id="silver-low", priority="low")
    await api.submit(org_id="gold", app_version_id="gold-low", priority="low")

    agent = await api.register()
    order = []
    while (claim := await api.claim(agent, expect=200 if len(order) < 6 else 204)) is not None:
        order.append(claim["app_version_id"])
        for job in claim["jobs"]:
            await api.run(agent, claim, job["id"], 0)
    assert order == ["gold-low", "silver-low", "high", "medium", "old-low", "newer-low"]


async def test_a_high_priority_job_lifts_its_whole_group(api: Api) -> None:
    await api.submit(app_version_id="v1", priority="low")
    await api.submit(app_version_id="v2", priority="medium")
    await api.submit(app_version_id="v1", priority="high")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    assert claim["app_version_id"] == "v1"
    assert [j["priority"] for j in claim["jobs"]] == ["high", "low"]


async def test_raising_an_orgs_tier_reorders_its_pending_groups(api: Api) -> None:
    await api.submit(org_id="first", app_version_id="a")
    await api.submit(org_id="late", app_version_id="b")
    await api.call("PUT", "/orgs/late", {"tier": "premium"})
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    assert claim["org_id"] == "late"


async def test_an_agent_only_takes_targets_it_serves(api: Api) -> None:
    device_job = await api.submit(target="device")
    emulator_only = await api.register("emu", ["emulator"])
    assert await api.claim(emulator_only, expect=204) is None
    both = await api.register("both", ["emulator", "device"])
    claim = await api.claim(both)
    assert claim is not None
    assert claim["target"] == "device"
    assert [j["id"] for j in claim["jobs"]] == [device_job["id"]]


async def test_exit_codes_become_final_statuses_with_times(api: Api) -> None:
    passed = await api.submit(test_path="pass.spec.ts")
    failed = await api.submit(test_path="fail.spec.ts")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    await api.run(agent, claim, passed["id"], 0, output_tail="1 passed")
    await api.run(agent, claim, failed["id"], 1, output_tail="1 failed")

    done = await api.call("GET", f"/jobs/{passed['id']}")
    assert done["status"] == "completed"
    assert done["result"]["exit_code"] == 0
    assert done["result"]["output_tail"] == "1 passed"
    assert done["started_at"] <= done["finished_at"]
    assert done["agent_id"] == agent
    bad = await api.call("GET", f"/jobs/{failed['id']}")
    assert bad["status"] == "failed"
    assert bad["result"]["exit_code"] == 1
    assert bad["attempts"] == 1
    assert bad["finished_at"] is not None
    history = bad["attempt_history"]
    assert [(a["number"], a["outcome"], a["exit_code"]) for a in history] == [(1, "test_failed", 1)]


async def test_bulk_submit_is_one_transaction(api: Api) -> None:
    good = {"org_id": "acme", "app_version_id": "v1", "test_path": "a.spec.ts"}
    created = await api.call("POST", "/jobs", [good, {**good, "test_path": "b.spec.ts"}], expect=201)
    assert len(created) == 2
    assert len({job["group_id"] for job in created}) == 1
    error = await api.call("POST", "/jobs", [good, {**good, "priority": "urgent"}], expect=400)
    assert "urgent" in str(error["extra"])
    listed = await api.call("GET", "/jobs")
    assert len(listed) == 2


async def test_cancel_a_pending_job_and_run_it_again(api: Api) -> None:
    job = await api.submit()
    cancelled = await api.call("DELETE", f"/jobs/{job['id']}")
    assert cancelled["status"] == "cancelled"
    agent = await api.register()
    assert await api.claim(agent, expect=204) is None
    again = await api.call("PUT", f"/jobs/{job['id']}/status", {"status": "pending"})
    assert again["status"] == "pending"
    claim = await api.claim(agent)
    assert claim is not None
    assert [j["id"] for j in claim["jobs"]] == [job["id"]]


async def test_concurrent_claimers_never_share_a_group(api: Api) -> None:
    for version in range(30):
        await api.submit(app_version_id=f"v{version}")
    agents = [await api.register(f"a{i}") for i in range(10)]

    async def drain(agent: str) -> list[str]:
        got = []
        while (claim := await _claim_or_none(api, agent)) is not None:
            got.append(claim["group_id"])
        return got

    results = await asyncio.gather(*(drain(a) for a in agents))
    claimed = [group for got in results for group in got]
    assert len(claimed) == 30
    assert len(set(claimed)) == 30


async def _claim_or_none(api: Api, agent: str) -> dict[str, Any] | None:
    response = await api.client.post(f"/api/agents/{agent}/claim", json={})
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else None


async def test_an_offline_agent_takes_no_work_until_set_idle(api: Api) -> None:
    await api.submit()
    agent = await api.register()
    await api.call("PUT", f"/agents/{agent}/status", {"status": "offline"})
    assert await api.claim(agent, expect=204) is None
    await api.call("PUT", f"/agents/{agent}/status", {"status": "idle"})
    assert await api.claim(agent) is not None
