"""Identifiers and test paths refuse control characters (C0, C1), the line and paragraph separators, Unicode's
bidirectional controls and a leading '-' on every route that accepts them: body fields, query and path parameters,
the reports route's org_id (issue 20, finding 7). Each refusal is a 400 naming the field, and nothing is stored."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio

JOB = {"org_id": "acme", "app_version_id": "v1", "test_path": "tests/a.spec.ts"}
BAD = {
    "C0": "a\x1b[31m",
    "C1": "a\x85b",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
    "right-to-left override": "a\u202eb",
    "left-to-right embedding": "a\u202ab",
    "first strong isolate": "a\u2068b",
    "right-to-left mark": "a\u200fb",
    "an option": "--help",
}


def _named(body: dict[str, Any]) -> str:
    extra = body.get("extra")
    if isinstance(extra, dict):
        return str(extra.get("field"))
    return str(extra[0]["key"])  # type: ignore[index]


@pytest.mark.parametrize("field", ["org_id", "app_version_id", "test_path"])
@pytest.mark.parametrize("kind", list(BAD))
async def test_a_job_field_is_refused(api: Api, field: str, kind: str) -> None:
    body = await api.call("POST", "/jobs", {**JOB, field: BAD[kind]}, expect=400)
    assert _named(body) == field, body
    body = await api.call("POST", "/jobs", [JOB, {**JOB, field: BAD[kind]}], expect=400)
    assert _named(body) == f"[1].{field}", body
    assert await api.call("GET", "/jobs") == []


@pytest.mark.parametrize("kind", list(BAD))
async def test_query_path_and_other_bodies_refuse_it(api: Api, kind: str) -> None:
    bad = BAD[kind]
    for path, params, field in [
        ("/jobs", {"org_id": bad}, "org_id"),
        ("/jobs", {"app_version_id": bad}, "app_version_id"),
        ("/tokens", {"org_id": bad}, "org_id"),
        ("/reports/org-success-rates", {"org_id": bad}, "org_id"),
    ]:
        body = await api.call("GET", path, expect=400, **params)
        assert _named(body) == field, (path, body)
    in_path = quote(bad, safe="")
    body = await api.call("GET", f"/orgs/{in_path}", expect=400)
    assert _named(body) == "org_id", body
    body = await api.call("PUT", f"/orgs/{in_path}", {"tier": "premium"}, expect=400)
    assert _named(body) == "org_id", body
    body = await api.call("POST", "/tokens", {"role": "submitter", "org_id": bad}, expect=400)
    assert _named(body) == "org_id", body
    body = await api.call("POST", "/tokens", {"role": "agent", "name": bad}, expect=400)
    assert _named(body) == "name", body
    body = await api.call("POST", "/agents", {"name": bad, "targets": ["emulator"]}, expect=400)
    assert _named(body) == "name", body
    assert await api.call("GET", "/agents") == []


async def test_events_refuse_it_before_a_stream_opens(api: Api) -> None:
    for bad in BAD.values():
        response = await api.client.get("/api/events", params={"org_id": bad})
        assert response.status_code == 400, (bad, response.text)
        assert _named(response.json()) == "org_id"


async def test_what_the_rule_lets_through(api: Api) -> None:
    """Names in any script, inner dashes, spaces and joiners are fine."""
    for name in ["acme-corp", "Åsa Öberg", "שלום", "日本語/テスト-1.spec.ts", "a\u200db", "x-", "a b"]:
        created = await api.call("POST", "/jobs", {**JOB, "org_id": name, "test_path": name}, expect=201)
        assert (created["org_id"], created["test_path"]) == (name, name)
    report = await api.call("GET", "/reports/org-success-rates", org_id="Åsa Öberg")
    assert report["org_id"] == "Åsa Öberg"
