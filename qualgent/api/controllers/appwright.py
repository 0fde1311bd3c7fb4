"""Agent routes that AppWright runs need (qualgent/agent/appwright.py): watching a run's jobs, and the BrowserStack
apps every agent shares (qualgent/queue/browserstack.py)."""

from __future__ import annotations

import uuid

from litestar import Controller, post
from litestar.params import FromPath, JSONBody

from qualgent.api.deps import ServicesDep
from qualgent.api.schemas import AgentJobOut, JobsWaitIn
from qualgent.notify.waiting import wait_for_change


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
        current, _ = await wait_for_change(services.engine, services.hub, known, data.timeout)
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
