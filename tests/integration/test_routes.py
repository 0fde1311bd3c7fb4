"""Every route of the seed, and the ones PRODUCT.md adds, answers: no 404, 405 or 5xx."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def test_every_seed_route_answers(api: Api) -> None:
    job = await api.submit()
    other = await api.submit(app_version_id="v2")
    agent = await api.register()
    spare = await api.register("spare")
    calls = [
        ("GET", f"/jobs/{job['id']}", None, 200),
        ("GET", "/jobs", None, 200),
        ("GET", "/jobs/queue/status", None, 200),
        ("PUT", f"/jobs/{other['id']}/status", {"status": "cancelled"}, 200),
        ("DELETE", f"/jobs/{job['id']}", None, 200),
        ("GET", "/agents", None, 200),
        ("GET", f"/agents/{agent}", None, 200),
        ("PUT", f"/agents/{agent}/heartbeat", {"claims": []}, 200),
        ("PUT", f"/agents/{agent}/status", {"status": "offline"}, 200),
        ("DELETE", f"/agents/{spare}", None, 200),
        ("GET", "/health", None, 200),
        ("GET", "/health/detailed", None, 200),
        ("GET", "/monitoring/metrics", None, 200),
        ("GET", "/monitoring/scale-recommendations", None, 200),
        ("PUT", "/orgs/acme", {"tier": "premium"}, 200),
        ("GET", "/orgs/acme", None, 200),
        ("GET", "/schema/openapi.json", None, 200),
    ]
    for method, path, body, expected in calls:
        await api.call(method, path, body, expect=expected)


async def test_queue_status_shows_pending_work_by_priority(api: Api) -> None:
    await api.submit(priority="high")
    await api.submit(priority="low", app_version_id="v2")
    status = await api.call("GET", "/jobs/queue/status")
    assert status["pending"] == 2
    assert status["pending_by_priority"] == {"high": 1, "medium": 0, "low": 1}


async def test_health_detailed_says_the_database_is_reachable(api: Api) -> None:
    health = await api.call("GET", "/health/detailed")
    assert health["database"]["reachable"] is True


async def test_unknown_ids_get_a_json_404(api: Api) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    body = await api.call("GET", f"/jobs/{missing}", expect=404)
    assert body["status_code"] == 404
    assert missing in body["detail"]
    body = await api.call("GET", "/jobs/not-a-uuid", expect=404)
    assert body["status_code"] == 404
