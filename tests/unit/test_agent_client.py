"""The agent's HTTP client sends through httpx's transport, not AsyncClient: what AsyncClient did for it (a proxy
from the environment, the bearer token, JSON bodies) must still happen."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from qualgent.agent import client as agent_client
from qualgent.agent.client import AgentClient, ServerConflict


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "http://qg.internal:8000/api", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://qg.internal:8000/api", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://qg.internal:8000/api", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://qg.example.com/api", "http://proxy:3128"),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://qg.internal/api", "http://proxy:3128"),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "qg.internal"}, "http://qg.internal:8000/api", None),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, "http://qg.internal/api", None),
    ],
)
def test_the_proxy_is_the_one_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert agent_client._proxy_for(httpx.URL(url)) == expected


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self, answers: list[httpx.Response]) -> None:
        self.answers = answers
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.seen.append(request)
        return self.answers.pop(0)


def test_requests_carry_the_token_the_json_body_and_timeouts_and_answers_are_decoded() -> None:
    async def scenario() -> tuple[list[httpx.Request], Any, Any, Exception]:
        client = AgentClient("http://server:8000/api/", "s3cret")
        recorder = _Recorder(
            [
                httpx.Response(503, json={"detail": "database away"}),
                httpx.Response(200, json={"id": "a1"}),
                httpx.Response(204),
                httpx.Response(409, json={"error": "StaleClaim", "detail": "not yours"}),
            ]
        )
        client._http = recorder  # type: ignore[assignment]
        registered = await client.call("POST", "/agents", {"name": "n", "targets": ["emulator"]}, retry_for=5)
        nothing = await client.call("GET", "/agents/a1/claim")
        with pytest.raises(ServerConflict) as conflict:
            await client.call("POST", "/agents/a1/groups/g/progress", {"token": "t"})
        return recorder.seen, registered, nothing, conflict.value

    seen, registered, nothing, conflict = asyncio.run(scenario())
    assert registered == {"id": "a1"}
    assert nothing is None
    assert isinstance(conflict, ServerConflict)
    assert conflict.stale_claim
    assert [(r.method, str(r.url)) for r in seen] == [
        ("POST", "http://server:8000/api/agents"),
        ("POST", "http://server:8000/api/agents"),  # the 503 was retried
        ("GET", "http://server:8000/api/agents/a1/claim"),
        ("POST", "http://server:8000/api/agents/a1/groups/g/progress"),
    ]
    assert all(r.headers["Authorization"] == "Bearer s3cret" for r in seen)
    assert json.loads(seen[0].content) == {"name": "n", "targets": ["emulator"]}
    assert seen[0].headers["Content-Type"] == "application/json"
    assert "Content-Type" not in seen[2].headers
    assert all(r.extensions["timeout"]["read"] == agent_client.TIMEOUT_SECONDS for r in seen)
