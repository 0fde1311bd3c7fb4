"""The agent's batched reporting (qualgent.agent.reporter) against the real server: when starts and results go out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from qualgent.agent.client import AgentClient
from qualgent.agent.reporter import LINGER_SECONDS, Reporter
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio

PASSED = {"exit_code": 0, "duration_ms": 3, "output_tail": "", "error": None}


async def test_a_start_waits_for_its_result_only_briefly_and_every_start_is_answered(api: Api) -> None:
    """A start may wait up to LINGER_SECONDS for its result (so that a quick test is reported once, start and result
    together: the bench measures what that saves); a test still running by then has its start reported alone, and
    shows as running long before it ends. The quick test's start, reported with its result beside the other start,
    is answered as accepted too."""
    quick, long = await api.submit(test_path="quick.spec.ts"), await api.submit(test_path="long.spec.ts")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    client = AgentClient(f"{api.client.base_url}/api", None)
    reporter = Reporter(client, agent, claim["group_id"], claim["token"], 30, lambda: None)
    try:
        quick_started = reporter.start(quick["id"])
        reporter.result(quick["id"], PASSED)
        began = time.monotonic()
        long_started = reporter.start(long["id"])
        assert await asyncio.wait_for(long_started, 5) is True  # accepted by the server, with no result yet
        assert time.monotonic() - began < 1.0  # held for about 2 x LINGER_SECONDS at most, never until the test ends
        assert await quick_started is True
        assert (await api.call("GET", f"/jobs/{quick['id']}"))["status"] == "completed"
        assert (await api.call("GET", f"/jobs/{long['id']}"))["status"] == "running"
        reporter.result(long["id"], PASSED)
        await reporter.close()
        assert (await api.call("GET", f"/jobs/{long['id']}"))["status"] == "completed"
        assert reporter.reported == 2
    finally:
        await client.close()


class _Counting(AgentClient):
    """The agent's client, keeping the progress reports it sends."""

    def __init__(self, api_url: str) -> None:
        super().__init__(api_url, None)
        self.reports: list[dict[str, Any]] = []

    async def call(self, method: str, path: str, body: Any = None, retry_for: float | None = None) -> Any:
        if path.endswith("/progress"):
            self.reports.append(body)
        return await super().call(method, path, body, retry_for)


async def test_a_suite_of_quick_tests_is_reported_a_linger_at_a_time_not_a_round_trip_at_a_time(api: Api) -> None:
    """Runs of 4 ms, one after another: what comes while a report is in flight lingers too, so reports go about every
    LINGER_SECONDS with several runs each (they went back to back, two runs each, a round trip apart)."""
    specs = [{"org_id": "acme", "app_version_id": "v1", "test_path": f"tests/{i}.spec.ts"} for i in range(40)]
    await api.call("POST", "/jobs", specs, expect=201)
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    assert len(claim["jobs"]) == 40
    client = _Counting(f"{api.client.base_url}/api")
    reporter = Reporter(client, agent, claim["group_id"], claim["token"], 30, lambda: None)
    try:
        began = time.monotonic()
        for job in claim["jobs"]:
            reporter.start(job["id"])
            await asyncio.sleep(0.004)  # the scenario: each test takes a moment, so reports linger and batch
            reporter.result(job["id"], PASSED)
        elapsed = time.monotonic() - began
        await reporter.close()
    finally:
        await client.close()
    assert reporter.reported == 40
    assert sum(len(report["results"]) for report in client.reports) == 40
    assert len(client.reports) <= elapsed / LINGER_SECONDS + 2  # and the group's closing report
