"""Event streams (GET /api/events) against the real server (issue 20, findings 2 and 4): another org's changes cost a
stream no read, a notification's jobs are read once for all the streams that want them, streams per token are
capped with a 429, and revoking a token ends its open streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import psycopg
import pytest

from qualgent.server.api import streams as events
from qualgent.server.db.engine import libpq_url
from qualgent.server.settings import Settings
from tests.eventually import until
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio

ADMIN = "admin-secret-for-streams"
CAP = 4


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return replace(settings, admin_token=ADMIN, rate_limit=0, max_streams_per_token=CAP)


@pytest.fixture
async def api(secured: Settings) -> AsyncIterator[Api]:
    async with serve_api(secured) as served:
        yield served


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _token(api: Api, role: str, org_id: str | None = None) -> tuple[str, str]:
    body = {"role": role, **({"org_id": org_id} if org_id else {})}
    response = await api.client.post("/api/tokens", json=body, headers=_bearer(ADMIN))
    assert response.status_code == 201, response.text
    made = response.json()
    return made["token"], made["id"]


async def _submit(api: Api, token: str, org_id: str, count: int = 1) -> list[str]:
    body = [{"org_id": org_id, "app_version_id": "v1", "test_path": f"t{i}.spec.ts"} for i in range(count)]
    response = await api.client.post("/api/jobs", json=body, headers=_bearer(token))
    assert response.status_code == 201, response.text
    return [job["id"] for job in response.json()]


class Stream:
    """An open event stream and the events it has received."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client, self.token = client, token
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.opened = asyncio.Event()
        self.ended = asyncio.Event()
        self.status: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async with self.client.stream("GET", "/api/events", headers=_bearer(self.token), timeout=60) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    return
                name = None
                async for line in response.aiter_lines():
                    if line == ": subscribed":
                        self.opened.set()
                    elif line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: ") and name is not None:
                        self.events.append((name, json.loads(line.removeprefix("data: "))))
        finally:
            self.opened.set()
            self.ended.set()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _open_when_room(client: httpx.AsyncClient, token: str, timeout: float = 10.0) -> Stream:
    """A stream, once the server has seen a closed one go (429 until then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stream = Stream(client, token)
        await asyncio.wait_for(stream.opened.wait(), timeout)
        if stream.status != 429 or asyncio.get_running_loop().time() > deadline:
            return stream
        await asyncio.sleep(0.05)


def _client(api: Api) -> httpx.AsyncClient:
    """A client of its own for the streams, without a cap on its connections."""
    return httpx.AsyncClient(base_url=str(api.client.base_url), limits=httpx.Limits(max_connections=None))


async def test_other_orgs_changes_cost_a_stream_no_read_and_one_read_serves_all(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real_read = events._read

    async def counted(engine: Any, ids: Any) -> list[dict[str, Any]]:
        reads.append(len(ids))
        return await real_read(engine, ids)

    monkeypatch.setattr(events, "_read", counted)
    alpha, _ = await _token(api, "submitter", "alpha")
    betas = [(await _token(api, "submitter", "beta"))[0] for _ in range(3)]
    async with _client(api) as client:
        streams = [Stream(client, token) for token in betas for _ in range(CAP)]  # 12 streams of beta
        for stream in streams:
            await asyncio.wait_for(stream.opened.wait(), 10)
            assert stream.status == 200
        for _ in range(5):
            await _submit(api, alpha, "alpha", count=3)
        cancelled = await _submit(api, betas[0], "beta")  # then one change of beta, after alpha's five
        response = await api.client.delete(f"/api/jobs/{cancelled[0]}", headers=_bearer(betas[0]))
        assert response.status_code == 200
        await until(lambda: all(len(s.events) >= 2 for s in streams))
        for stream in streams:
            assert [(name, e["org_id"], e["status"]) for name, e in stream.events] == [
                ("job", "beta", "pending"),
                ("job", "beta", "cancelled"),
            ]
        # alpha's five notifications were read by no one; beta's two once each, for all twelve streams
        assert reads == [1, 1], reads
        for stream in streams:
            await stream.close()


async def test_streams_per_token_are_capped_with_a_429(api: Api) -> None:
    alpha, _ = await _token(api, "submitter", "alpha")
    other, _ = await _token(api, "submitter", "alpha")
    async with _client(api) as client:
        streams = [Stream(client, alpha) for _ in range(CAP)]
        for stream in streams:
            await asyncio.wait_for(stream.opened.wait(), 10)
            assert stream.status == 200
        response = await client.get("/api/events", headers=_bearer(alpha))
        assert response.status_code == 429
        assert "at most 4" in response.json()["detail"]
        assert response.headers["Retry-After"]
        another = Stream(client, other)  # another token of the same org has its own streams
        await asyncio.wait_for(another.opened.wait(), 10)
        assert another.status == 200
        await streams[0].close()
        again = await _open_when_room(client, alpha)  # a closed stream makes room
        assert again.status == 200
        for stream in [*streams[1:], another, again]:
            await stream.close()


async def test_revoking_a_token_ends_its_open_streams(api: Api, db_url: str) -> None:
    alpha, alpha_id = await _token(api, "submitter", "alpha")
    beta, beta_id = await _token(api, "submitter", "alpha")
    async with _client(api) as client:
        first, second, kept = Stream(client, alpha), Stream(client, beta), Stream(client, ADMIN)
        for stream in (first, second, kept):
            await asyncio.wait_for(stream.opened.wait(), 10)
            assert stream.status == 200
        # Revoked through the API of this server...
        response = await api.client.delete(f"/api/tokens/{alpha_id}", headers=_bearer(ADMIN))
        assert response.status_code == 200
        await asyncio.wait_for(first.ended.wait(), 10)
        assert first.events[-1] == ("closed", {"reason": "token revoked"})
        # ... or by anyone else (another server, SQL by hand): the change is announced to every server.
        async with await psycopg.AsyncConnection.connect(libpq_url(db_url), autocommit=True) as conn:
            await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s", (beta_id,))
        await asyncio.wait_for(second.ended.wait(), 10)
        assert second.events[-1] == ("closed", {"reason": "token revoked"})
        # Streams of tokens still live go on, and see what comes next.
        assert not kept.ended.is_set()
        await _submit(api, ADMIN, "alpha")
        await until(lambda: any(name == "job" for name, _ in kept.events))
        await kept.close()
        # the revoked token opens no new stream
        response = await client.get("/api/events", headers=_bearer(alpha))
        assert response.status_code == 401
