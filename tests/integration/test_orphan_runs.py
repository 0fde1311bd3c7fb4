"""Every run that started leaves an attempt (issue 20, finding 6): a report refused because its claim was lost (409)
still puts the runs it tells of in their jobs' history, once, without touching the jobs' state. Over HTTP, with
1 s leases that lapse (no heartbeats) and the server's own rescue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from qualgent.server.settings import Settings
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serve_api(replace(settings, lease_seconds=1)) as served:
        yield served


async def _rescued(api: Api, job_id: str, group_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The job, once the rescue has handed its lapsed group back (it is in another group now)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        job = await api.call("GET", f"/jobs/{job_id}")
        if job["group_id"] != group_id:
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError("the lapsed claim was not rescued")


async def test_a_run_reported_after_the_claim_was_lost_is_recorded_once(api: Api) -> None:
    job = await api.submit(test_path="tests/pay.spec.ts")
    lost_agent = await api.register("lost")
    claim = await api.claim(lost_agent)
    assert claim is not None
    await _rescued(api, job["id"], claim["group_id"])

    path = f"/agents/{lost_agent}/groups/{claim['group_id']}/progress"
    report = {
        "token": claim["token"],
        "started": [{"job_id": job["id"], "elapsed_ms": 4000}],
        "results": [{"job_id": job["id"], "exit_code": 1, "duration_ms": 3900, "error": "expected 2, got 3"}],
    }
    await api.call("POST", path, report, expect=409)
    after = await api.call("GET", f"/jobs/{job['id']}")
    assert (after["status"], after["attempts"]) == ("pending", 1)  # its state as it was, one attempt spent
    assert after["result"] is None or after["result"]["exit_code"] is None
    (attempt,) = after["attempt_history"]
    assert (attempt["number"], attempt["agent_id"], attempt["outcome"]) == (1, lost_agent, "test_failed")
    assert (attempt["exit_code"], attempt["error"]) == (1, "expected 2, got 3")
    assert attempt["started_at"] < attempt["finished_at"]

    await api.call("POST", path, report, expect=409)  # told twice, recorded once
    assert len((await api.call("GET", f"/jobs/{job['id']}"))["attempt_history"]) == 1

    # A wrong token records nothing (only the agent that held the claim can).
    forged = {**report, "token": "00000000-0000-4000-8000-000000000000"}
    other = await api.submit(test_path="tests/other.spec.ts", app_version_id="v2")
    await api.call("POST", path, {**forged, "started": [{"job_id": other["id"]}], "results": []}, expect=409)
    assert (await api.call("GET", f"/jobs/{other['id']}"))["attempt_history"] == []


async def test_an_orphan_run_goes_before_the_run_going_on_elsewhere(api: Api) -> None:
    job = await api.submit(test_path="tests/pay.spec.ts")
    lost_agent = await api.register("lost")
    claim = await api.claim(lost_agent)
    assert claim is not None
    await _rescued(api, job["id"], claim["group_id"])

    taker = await api.register("taker")
    taken = await api.claim(taker)
    assert taken is not None
    taken_path = f"/agents/{taker}/groups/{taken['group_id']}/progress"
    await api.call("POST", taken_path, {"token": taken["token"], "started": [{"job_id": job["id"]}]})

    # Only a start: the lost agent never learnt how its run ended (it stops the test once it hears 409).
    lost_path = f"/agents/{lost_agent}/groups/{claim['group_id']}/progress"
    await api.call("POST", lost_path, {"token": claim["token"], "started": [{"job_id": job["id"]}]}, expect=409)
    now = await api.call("GET", f"/jobs/{job['id']}")
    assert (now["status"], now["attempts"], now["agent_id"]) == ("running", 2, taker)
    assert [(a["number"], a["agent_id"], a["outcome"]) for a in now["attempt_history"]] == [
        (1, lost_agent, "infra_error"),
        (2, taker, None),  # the run going on is the latest
    ]
    assert "claim was lost" in now["attempt_history"][0]["error"]

    answer = await api.call(
        "POST", taken_path, {"token": taken["token"], "results": [{"job_id": job["id"], "exit_code": 0}]}
    )
    assert answer["refused"] == []
    done = await api.call("GET", f"/jobs/{job['id']}")
    assert (done["status"], done["attempts"], done["flaky"]) == ("completed", 2, False)
    assert [(a["number"], a["outcome"]) for a in done["attempt_history"]] == [(1, "infra_error"), (2, "passed")]
