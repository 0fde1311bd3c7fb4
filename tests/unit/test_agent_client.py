"""The agent's HTTP client sends through httpx's transport, not AsyncClient, and so picks the environment's proxy
itself, as AsyncClient would (tests/integration/test_auth.py talks to a real server with it)."""

from __future__ import annotations

import httpx
import pytest

from qualgent.agent import client as agent_client


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
