from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from qualgent.server.api import create_app, serving
from qualgent.server.settings import Settings

pytestmark = pytest.mark.anyio


class Api:
    """The HTTP API as a test speaks it: helpers that assert the status and return the JSON."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200, **params: Any) -> Any:
        response = await self.client.request(method, f"/api{path}", json=body, params=params or None)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def submit(self, expect: int = 201, **job: Any) -> dict[str, Any]:
        job.setdefault("org_id", "acme")
        job.setdefault("app_version_id", "v1")
        job.setdefault("test_path", "tests/login.spec.ts")
        return await self.call("POST", "/jobs", job, expect=expect)  # type: ignore[no-any-return]

    async def register(self, name: str = "agent", targets: list[str] | None = None) -> str:
        agent = await self.call("POST", "/agents", {"name": name, "targets": targets or ["emulator"]}, expect=201)
        return str(agent["id"])

    async def claim(self, agent_id: str, expect: int = 200) -> dict[str, Any] | None:
        return await self.call("POST", f"/agents/{agent_id}/claim", {}, expect=expect)  # type: ignore[no-any-return]

    async def run(
        self, agent_id: str, claim: dict[str, Any], job_id: str, exit_code: int | None, expect: int = 200, **extra: Any
    ) -> dict[str, Any]:
        ref = {"group_id": claim["group_id"], "token": claim["token"]}
        await self.call("POST", f"/agents/{agent_id}/jobs/{job_id}/start", ref, expect=200 if expect == 200 else expect)
        body = {**ref, "exit_code": exit_code, "duration_ms": 1200, **extra}
        return await self.call(  # type: ignore[no-any-return]
            "POST", f"/agents/{agent_id}/jobs/{job_id}/result", body, expect=expect
        )


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, lease_seconds=30)


@contextlib.asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[Api]:
    """The real app served by uvicorn on a free port in this test's event loop, spoken to over HTTP:
    concurrent requests (long-polls, waiting claims) really run concurrently."""
    async with serve_app(create_app(settings)) as served:
        yield served


@contextlib.asynccontextmanager
async def serve_app(app: Litestar) -> AsyncIterator[Api]:
    """`app` served as `qgjob server` serves it: on sockets bound first (port 0: the kernel picks a free one)."""
    sockets = serving.bind("127.0.0.1", 0)
    port = sockets[0].getsockname()[1]
    server = serving.Server(serving.config(app, "127.0.0.1", port, "warning"), capture_signals=False)
    task = asyncio.create_task(server.serve(sockets))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield Api(client)
    finally:
        server.should_exit = True
        await task
        for sock in sockets:
            sock.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serve_api(settings) as served:
        yield served
