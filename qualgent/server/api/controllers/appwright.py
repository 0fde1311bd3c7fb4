"""Agent routes that AppWright runs need (qualgent/agent/appwright.py): watching a run's jobs, and the BrowserStack
apps every agent shares (qualgent/server/queue/browserstack.py)."""

from __future__ import annotations

import uuid

from litestar import Controller, post, put
from litestar.params import FromPath, JSONBody

from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import (
    AgentJobOut,
    BrowserstackAppIn,
    BrowserstackAppOut,
    BrowserstackGoneIn,
    BrowserstackUploadIn,
    JobsWaitIn,
)
from qualgent.server.api.waiting import wait_for_change
from qualgent.server.queue import browserstack


class AppwrightController(Controller):
    path = "/agents"
    tags = ["agents"]

    @post(
        "/{agent_id:uuid}/jobs/wait",
        status_code=200,
        summary="Long-poll a run's jobs: answers as soon as one has another status than given (a cancel), or at the "
        "timeout, with each job's status, attempts, retries and timeout",
    )
    async def wait_jobs(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[JobsWaitIn]
    ) -> list[AgentJobOut]:
        known = {j.id: (None if j.status is None else j.status.value) for j in data.jobs}
        current, _ = await wait_for_change(services.queue, services.hub, known, data.timeout)
        return [
            AgentJobOut(
                id=row["id"],
                status=row["status"],
                attempts=row["attempts"],
                max_attempts=row["max_attempts"],
                test_retries=row["test_retries"],
                timeout_seconds=row["timeout_seconds"],
            )
            for row in current
        ]

    @post(
        "/{agent_id:uuid}/browserstack-apps/upload-lease",
        status_code=200,
        summary="The build's BrowserStack app id, or the right to upload the build now (one agent at a time)",
    )
    async def browserstack_lease(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[BrowserstackAppIn]
    ) -> BrowserstackAppOut:
        answer = await browserstack.upload_lease(services.db, data.org_id, data.app_version_id)
        return BrowserstackAppOut(**answer)

    @put("/{agent_id:uuid}/browserstack-apps", status_code=200, summary="Record the app id an upload got")
    async def browserstack_uploaded(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[BrowserstackUploadIn]
    ) -> BrowserstackAppOut:
        row = await browserstack.record_upload(
            services.db, data.org_id, data.app_version_id, data.upload_token, data.app_url
        )
        return BrowserstackAppOut(**row)

    @post(
        "/{agent_id:uuid}/browserstack-apps/gone",
        status_code=200,
        summary="BrowserStack no longer has this app: the next run uploads the build again",
    )
    async def browserstack_gone(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[BrowserstackGoneIn]
    ) -> dict[str, bool]:
        return {"forgotten": await browserstack.forget(services.db, data.org_id, data.app_version_id, data.app_url)}
