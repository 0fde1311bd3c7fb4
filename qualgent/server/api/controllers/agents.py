from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from qualgent.domain import AgentStatus, InvalidInput, JobStatus
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import (
    AgentIn,
    AgentOut,
    AgentStatusIn,
    ClaimIn,
    ClaimOut,
    HeartbeatIn,
    HeartbeatOut,
    HeldBuildIn,
    JobOut,
    JobStatusOut,
    ProgressIn,
    ProgressOut,
    ReleaseIn,
    ResultIn,
    StartIn,
    agent_out,
    claim_out,
    job_out,
    progress_out,
)
from qualgent.server.api.waiting import claim_or_wait, wait_for_change
from qualgent.server.queue import agents, claims


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]

    @post("", status_code=201, summary="Register an agent and the targets it serves")
    async def register(self, services: ServicesDep, data: JSONBody[AgentIn]) -> AgentOut:
        return agent_out(await agents.register(services.queue, data.name, [t.value for t in data.targets]))

    @get("", summary="List agents (those that deregistered only with include_deregistered=true)")
    async def list_agents(
        self,
        services: ServicesDep,
        status: FromQuery[AgentStatus | None] = None,
        include_deregistered: FromQuery[bool] = False,
    ) -> list[AgentOut]:
        rows = await agents.list_agents(services.queue, status, include_deregistered=include_deregistered)
        return [agent_out(r) for r in rows]

    @get("/{agent_id:uuid}")
    async def get_agent(self, services: ServicesDep, agent_id: FromPath[uuid.UUID]) -> AgentOut:
        return agent_out(await agents.get(services.queue, agent_id))

    @put("/{agent_id:uuid}/heartbeat", summary="I am alive: extend my claims' leases")
    async def heartbeat(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[HeartbeatIn | None] = None
    ) -> HeartbeatOut:
        held = {c.group_id: c.token for c in data.claims} if data else {}
        lease = services.settings.lease_seconds
        answer = await claims.heartbeat(services.queue, agent_id, held)
        return HeartbeatOut(agent_id=agent_id, lease_seconds=lease, **answer)

    @put("/{agent_id:uuid}/status", summary="Set an agent's status (offline: take no more work)")
    async def set_status(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], data: JSONBody[AgentStatusIn]
    ) -> AgentOut:
        row = await agents.set_status(services.queue, agent_id, data.status)
        return agent_out(row)

    @delete("/{agent_id:uuid}", status_code=200, summary="Deregister: held work goes back to the queue")
    async def deregister(self, services: ServicesDep, agent_id: FromPath[uuid.UUID]) -> AgentOut:
        return agent_out(await agents.deregister(services.queue, agent_id))

    @post("/{agent_id:uuid}/claim", summary="Claim the best waiting group: 200 with it, or 204 when none")
    async def claim(
        self,
        services: ServicesDep,
        request: Request[Any, Any, Any],
        agent_id: FromPath[uuid.UUID],
        data: JSONBody[ClaimIn | None] = None,
    ) -> Response[ClaimOut | None]:
        lease = services.settings.lease_seconds
        served = set(await agents.targets(services.queue, agent_id, services.agent_targets))
        wanted = [t.value for t in data.targets] if data and data.targets else sorted(served)
        if not set(wanted) <= served:
            raise InvalidInput(f"agent {agent_id} does not serve {sorted(set(wanted) - served)}", field="targets")
        wait = data.wait if data else 0.0
        held = _held(data.held_builds if data else [])
        gone = asyncio.Event()
        watch = asyncio.create_task(_until_disconnected(request, gone)) if wait > 0 else None
        try:
            got = await claim_or_wait(
                services.hub,
                wanted,
                wait,
                lambda: claims.claim(services.queue, agent_id, wanted, held),
                gone=gone,
            )
        finally:
            if watch is not None:
                watch.cancel()
        if got is None:
            return Response(None, status_code=204)
        return Response(claim_out(got, lease), status_code=200)

    @get(
        "/{agent_id:uuid}/jobs/{job_id:uuid}/wait",
        summary="Long-poll a running job: answers when it is no longer running (a cancel), or at the timeout",
    )
    async def wait_job(
        self,
        services: ServicesDep,
        agent_id: FromPath[uuid.UUID],
        job_id: FromPath[uuid.UUID],
        timeout: Annotated[float, QueryParameter(ge=0, le=60)] = 20.0,
    ) -> JobStatusOut:
        current, _ = await wait_for_change(services.queue, services.hub, {job_id: JobStatus.RUNNING.value}, timeout)
        return JobStatusOut(id=job_id, status=JobStatus(current[0]["status"]))

    @post("/{agent_id:uuid}/jobs/{job_id:uuid}/start", status_code=200, summary="Start a claimed job")
    async def start_job(
        self, services: ServicesDep, agent_id: FromPath[uuid.UUID], job_id: FromPath[uuid.UUID], data: JSONBody[StartIn]
    ) -> JobOut:
        row = await claims.start_job(services.queue, agent_id, data.group_id, data.token, job_id)
        return job_out(row)

    @post("/{agent_id:uuid}/jobs/{job_id:uuid}/result", status_code=200, summary="Report how a run ended")
    async def report(
        self,
        services: ServicesDep,
        agent_id: FromPath[uuid.UUID],
        job_id: FromPath[uuid.UUID],
        data: JSONBody[ResultIn],
    ) -> JobOut:
        row = await claims.report_result(services.queue, agent_id, data.group_id, data.token, job_id, data.result())
        return job_out(row)

    @post(
        "/{agent_id:uuid}/groups/{group_id:uuid}/progress",
        status_code=200,
        summary="Report starts and results of a claimed group's jobs, many at once, in one transaction",
    )
    async def progress(
        self,
        services: ServicesDep,
        agent_id: FromPath[uuid.UUID],
        group_id: FromPath[uuid.UUID],
        data: JSONBody[ProgressIn],
    ) -> ProgressOut:
        starts = [claims.Started(s.job_id, s.elapsed_ms) for s in data.started]
        results = [(r.job_id, r.result()) for r in data.results]
        lease = services.settings.lease_seconds
        then = await agents.targets(services.queue, agent_id, services.agent_targets) if data.then_claim else None
        done = await claims.report_progress(
            services.queue, agent_id, group_id, data.token, starts, results, then, _held(data.held_builds)
        )
        return progress_out(done, None if done.next_claim is None else claim_out(done.next_claim, lease))

    @post(
        "/{agent_id:uuid}/groups/{group_id:uuid}/release",
        status_code=200,
        summary="Give a claimed group back; its unfinished jobs return to the queue",
    )
    async def release(
        self,
        services: ServicesDep,
        agent_id: FromPath[uuid.UUID],
        group_id: FromPath[uuid.UUID],
        data: JSONBody[ReleaseIn],
    ) -> dict[str, str]:
        await claims.release(services.queue, agent_id, group_id, data.token, data.reason)
        return {"group_id": str(group_id), "status": "released"}


async def _until_disconnected(request: Request[Any, Any, Any], gone: asyncio.Event) -> None:
    """Set `gone` when the client hangs up: after the body, the next ASGI message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _held(held: list[HeldBuildIn]) -> tuple[claims.HeldBuild, ...]:
    return tuple(claims.HeldBuild(b.target.value, b.org_id, b.app_version_id) for b in held)
