"""/metrics is valid Prometheus text with qualgent_ metrics that move with the queue; health and queue status
say what an operator needs."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import qualgent
from qualgent.server.settings import Settings
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio


async def scrape(api: Api) -> dict[str, Any]:
    """Every sample of /metrics, by family name: {family: {(name, labels...): value}}."""
    response = await api.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, Any] = {}
    for family in text_string_to_metric_families(response.text):  # raises on anything that is not valid
        families[family.name] = {
            (sample.name, *sorted(sample.labels.items())): sample.value for sample in family.samples
        }
    return families


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    key = (sample or family, *sorted(labels.items()))
    return float(families.get(family, {}).get(key, 0.0))


async def test_metrics_is_prometheus_text_with_the_queue_by_target_priority_and_tier(api: Api) -> None:
    await api.call("PUT", "/orgs/bigco", {"tier": "premium"})
    await api.submit(org_id="bigco", priority="high", test_path="a.spec.ts")
    await api.submit(org_id="bigco", priority="high", test_path="b.spec.ts")
    await api.submit(org_id="acme", priority="low", target="device")
    await api.register(name="both", targets=["emulator", "device"])
    families = await scrape(api)
    assert all(name.startswith("qualgent_") for name in families if not name.startswith(("process_", "python_")))
    depth = "qualgent_queue_depth"
    assert value(families, depth, target="emulator", priority="high", tier="premium") == 2
    assert value(families, depth, target="device", priority="low", tier="standard") == 1
    assert value(families, "qualgent_groups", target="emulator", status="pending") == 1
    assert value(families, "qualgent_agents", target="emulator", status="idle") == 1
    assert value(families, "qualgent_agents", target="device", status="idle") == 1
    assert value(families, "qualgent_database_up") == 1
    assert value(families, "qualgent_listen_connected") == 1
    assert "qualgent_oldest_wait_seconds" in families
    assert value(families, "qualgent_build_info", version=qualgent.__version__) == 1


async def test_counters_and_histograms_move_when_jobs_run(api: Api) -> None:
    before = await scrape(api)
    passed = await api.submit(test_path="pass.spec.ts")
    failed = await api.submit(test_path="fail.spec.ts")
    cancelled = await api.submit(test_path="cancel.spec.ts", app_version_id="v2")
    agent = await api.register(name="m1")
    claim = await api.claim(agent)
    assert claim is not None
    await api.run(agent, claim, passed["id"], 0)
    await api.run(agent, claim, failed["id"], 1)
    await api.call("DELETE", f"/jobs/{cancelled['id']}")
    after = await scrape(api)  # the queue's gauges are as the first scrape read them (cached for 5 s)

    def delta(family: str, sample: str, **labels: str) -> float:
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    finished = "qualgent_jobs_finished"
    assert delta(finished, "qualgent_jobs_finished_total", status="completed", target="emulator") == 1
    assert delta(finished, "qualgent_jobs_finished_total", status="failed", target="emulator") == 1
    assert delta(finished, "qualgent_jobs_finished_total", status="cancelled", target="emulator") == 1
    duration = "qualgent_test_duration_seconds"
    assert delta(duration, f"{duration}_count", target="emulator", status="completed") == 1
    assert delta(duration, f"{duration}_sum", target="emulator", status="completed") == pytest.approx(1.2)
    for le, moved in (("1.0", 0), ("5.0", 1), ("+Inf", 1)):  # a bucket counts what is at most its bound
        assert delta(duration, f"{duration}_bucket", target="emulator", status="completed", le=le) == moved
    wait = "qualgent_queue_wait_seconds"
    assert delta(wait, f"{wait}_count", target="emulator", priority="medium") == 2
    claims = "qualgent_claim_duration_seconds"
    assert delta(claims, f"{claims}_count", result="claimed") == 1
    assert value(after, "qualgent_notifications_delivered", "qualgent_notifications_delivered_total") > 0


async def test_a_lapsed_lease_counts_as_rescued(db_url: str) -> None:
    async with serve_api(Settings(database_url=db_url, lease_seconds=0.5)) as api:
        before = value(await scrape(api), "qualgent_leases_rescued", "qualgent_leases_rescued_total")
        await api.submit()
        agent = await api.register()
        assert await api.claim(agent) is not None
        for _ in range(100):  # the rescue loop runs every 0.5 s here
            families = await scrape(api)
            if value(families, "qualgent_leases_rescued", "qualgent_leases_rescued_total") > before:
                break
            await asyncio.sleep(0.1)
        assert value(families, "qualgent_leases_rescued", "qualgent_leases_rescued_total") == before + 1


async def test_monitoring_metrics_is_the_same_in_json(api: Api) -> None:
    await api.submit(priority="high")
    body = await api.call("GET", "/monitoring/metrics")
    assert body["database_up"] is True
    assert body["totals"]["pending"] == 1
    assert body["state"]["queue"] == [
        {"target": "emulator", "priority": "high", "tier": "standard", "jobs": 1, "ready": 1}
    ]
    assert "qualgent_jobs_finished" in body["process"]
    assert body["listen"]["connected"] is True


async def test_queue_status_shows_what_is_pending_by_priority_and_the_groups(api: Api) -> None:
    running = await api.submit(app_version_id="v3", test_path="r.spec.ts")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    await api.submit(priority="high", test_path="a.spec.ts")
    await api.submit(priority="high", test_path="b.spec.ts")
    await api.submit(priority="low", app_version_id="v2", target="device")
    await api.call(
        "POST", f"/agents/{agent}/jobs/{running['id']}/start", {"group_id": claim["group_id"], "token": claim["token"]}
    )
    status = await api.call("GET", "/jobs/queue/status")
    assert status["pending_by_priority"] == {"high": 2, "medium": 0, "low": 1}
    assert status["pending_by_target"] == {"emulator": 2, "device": 1, "browserstack": 0}
    assert status["pending_by_org"] == {"acme": 3}
    assert status["running"] == 1
    pending = {g["app_version_id"]: g["size"] for g in status["groups"]["pending"]}
    assert pending == {"v1": 2, "v2": 1}
    assert [(g["app_version_id"], g["running"]) for g in status["groups"]["running"]] == [("v3", 1)]
    assert status["oldest_wait_seconds"] >= 0


async def test_health_detailed_reports_database_listen_agents_and_queue(api: Api) -> None:
    await api.submit()
    await api.register()
    health = await api.call("GET", "/health/detailed")
    assert health["status"] == "ok"
    database = health["database"]
    assert database["reachable"] is True
    assert database["latency_ms"] >= 0
    assert database["schema_revision"] == database["expected_schema_revision"] is not None
    assert health["listen"]["connected"] is True
    assert health["agents"] == {"idle": 1, "busy": 0, "offline": 0}
    assert health["queue"]["pending"] == 1


async def test_health_detailed_says_when_the_database_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{port}/nothing", lease_seconds=30)
    async with serve_api(settings) as api:
        assert (await api.call("GET", "/health"))["status"] == "ok"  # alive, though not ready
        health = await api.call("GET", "/health/detailed", expect=503)
        assert health["status"] == "degraded"
        assert health["database"]["reachable"] is False
        assert health["database"]["error"]
        assert health["listen"]["connected"] is False
        families = await scrape(api)
        assert value(families, "qualgent_database_up") == 0


async def test_scale_recommendations_ask_for_an_agent_per_waiting_group(api: Api) -> None:
    await api.submit(app_version_id="v1")
    await api.submit(app_version_id="v2")
    await api.register(targets=["device"])
    advice = {a["target"]: a for a in await api.call("GET", "/monitoring/scale-recommendations")}
    assert advice["emulator"]["add_agents"] == 2
    assert advice["emulator"]["pending_groups"] == 2
    assert advice["emulator"]["oldest_wait_seconds"] is not None
    assert advice["device"]["remove_agents"] == 0
    assert "group(s) waiting" in advice["emulator"]["reason"]
