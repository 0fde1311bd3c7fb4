"""Bad input of every kind gets a clear 4xx whose JSON body names the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio

JOB = {"org_id": "acme", "app_version_id": "v1", "test_path": "tests/a.spec.ts"}
MISSING = "00000000-0000-4000-8000-000000000000"


def named(body: dict[str, Any]) -> str:
    """The field a rejection names: our errors say `field`, Litestar's validation says `key`."""
    extra = body.get("extra")
    if isinstance(extra, dict):
        return str(extra.get("field"))
    assert isinstance(extra, list), body
    return str(extra[0]["key"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"target": "toaster"}, "target"),
        ({"org_id": "a" * 10_000}, "org_id"),
        ({"org_id": ""}, "org_id"),
        ({"app_version_id": "v1\x00"}, "app_version_id"),
        ({"test_path": "tests/a\x00.spec.ts"}, "test_path"),
        ({"test_path": "tests/a.spec.ts\n"}, "test_path"),
        ({"test_path": "--reporter=/etc/passwd"}, "test_path"),
        ({"test_path": "x" * 1025}, "test_path"),
        ({"org_id": 42}, "org_id"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"priority": None}, "priority"),
        ({"surprise": True}, "body"),
    ],
)
async def test_a_bad_field_is_a_400_naming_it(api: Api, change: dict[str, Any], field: str) -> None:
    body = await api.call("POST", "/jobs", {**JOB, **change}, expect=400)
    assert body["status_code"] == 400
    assert named(body) == field or field in body["extra"][0]["message"], body
    assert await api.call("GET", "/jobs") == []


async def test_a_bad_item_of_a_bulk_list_is_named_by_its_index_and_nothing_is_queued(api: Api) -> None:
    jobs = [JOB, {**JOB, "test_path": "b.ts"}, {**JOB, "priority": "urgent"}]
    body = await api.call("POST", "/jobs", jobs, expect=400)
    assert named(body) == "[2].priority"
    body = await api.call("POST", "/jobs", [JOB, {**JOB, "test_path": "-x"}], expect=400)
    assert named(body) == "[1].test_path"
    assert "'-'" in body["extra"][0]["message"]
    assert await api.call("GET", "/jobs") == []


@pytest.mark.parametrize("size", [0, 10_001])
async def test_bulk_lists_are_bounded(api: Api, size: int) -> None:
    body = await api.call("POST", "/jobs", [JOB] * size, expect=400)
    assert named(body) == "body"
    assert "length" in body["extra"][0]["message"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"not json", "application/json"), (b'{"org_id": "a",', "application/json"), (b"\xff\xfe", "application/json")],
)
async def test_a_body_that_is_not_json_is_a_400(api: Api, content: bytes, content_type: str) -> None:
    response = await api.client.post("/api/jobs", content=content, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["status_code"] == 400


async def test_an_oversized_body_is_refused_before_it_is_read_whole(api: Api) -> None:
    response = await api.client.post(
        "/api/jobs", content=b"[" + b" " * (9 * 1024 * 1024) + b"]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/jobs", {"org_id": "\x00"}, "org_id"),
        ("/jobs", {"org_id": "a" * 129}, "org_id"),
        ("/jobs", {"app_version_id": "v\n"}, "app_version_id"),
        ("/jobs", {"status": "done"}, "status"),
        ("/jobs", {"limit": "0"}, "limit"),
        ("/jobs", {"limit": "lots"}, "limit"),
        ("/jobs", {"before": "yesterday"}, "before"),
        ("/tokens", {"org_id": "\x00"}, "org_id"),
        ("/agents", {"status": "asleep"}, "status"),
    ],
)
async def test_a_bad_query_parameter_is_a_400_naming_it(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    body = await api.call("GET", path, expect=400, **params)
    assert named(body) == field


@pytest.mark.parametrize("org_id", ["%00", "a%0A", "a" * 129])
async def test_a_bad_org_in_the_path_is_a_400(api: Api, org_id: str) -> None:
    body = await api.call("PUT", f"/orgs/{org_id}", {"tier": "premium"}, expect=400)
    assert named(body) == "org_id"
    body = await api.call("GET", f"/orgs/{org_id}", expect=400)
    assert named(body) == "org_id"


async def test_what_an_agent_reports_is_bounded_and_nul_bytes_in_output_are_kept_as_u_fffd(api: Api) -> None:
    job = await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/start", ref)
    for bad, field in [({"exit_code": 2**40}, "exit_code"), ({"exit_code": 0, "duration_ms": -1}, "duration_ms")]:
        body = await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/result", {**ref, **bad}, expect=400)
        assert named(body) == field
    result = {**ref, "exit_code": 1, "output_tail": "line\x00one\n", "error": "bad\x00"}
    done = await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/result", result)
    assert done["result"]["output_tail"] == "line\ufffdone\n"
    assert done["result"]["error"] == "bad\ufffd"


async def test_unknown_and_malformed_ids_are_404(api: Api) -> None:
    for path in (f"/jobs/{MISSING}", "/jobs/not-a-uuid", f"/agents/{MISSING}", "/tokens/zzz"):
        method = "DELETE" if path.startswith("/tokens") else "GET"
        body = await api.call(method, path, expect=404)
        assert body["status_code"] == 404


async def test_a_valid_body_is_decoded_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The strict check decodes a body into its declared type and hands that to the handler: Litestar's own lax
    decode (a second parse of every body, half of its cost) does not run."""
    from litestar.connection import request as litestar_request

    decoded: list[bytes] = []
    original = litestar_request.decode_json

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(value)
        return original(value, *args, **kwargs)

    monkeypatch.setattr(litestar_request, "decode_json", counting)
    job = await api.submit(**JOB)
    agent_id = await api.register()
    claim = await api.claim(agent_id)
    assert claim is not None
    body = {
        "token": claim["token"],
        "started": [{"job_id": job["id"]}],
        "results": [{"job_id": job["id"], "exit_code": 0}],
    }
    answer = await api.call("POST", f"/agents/{agent_id}/groups/{claim['group_id']}/progress", body)
    assert [j["status"] for j in answer["reported"]] == ["completed"]
    assert decoded == []
