from __future__ import annotations

import logging
import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from qualgent.domain import InvalidInput, JobStatus, NotFound, Target
from qualgent.domain.roles import Role
from qualgent.server.api import waiting
from qualgent.server.api.auth import Principal, PrincipalDep
from qualgent.server.api.deps import Services, ServicesDep
from qualgent.server.api.schemas import (
    IdentifierQuery,
    JobIn,
    JobOut,
    JobsIn,
    JobStatusIn,
    QueueOut,
    WaitIn,
    WaitOut,
    check_bulk,
    job_out,
    new_job_out,
)
from qualgent.server.queue import agents, history, jobs, stats
from qualgent.server.queue.jobs import JobFilter, JobSpec

log = logging.getLogger(__name__)


def _spec(job: JobIn) -> JobSpec:
    return JobSpec(
        job.org_id,
        job.app_version_id,
        job.test_path,
        job.priority,
        job.target,
        job.max_attempts,
        job.test_retries,
        job.timeout_seconds,
    )


async def _require_visible(services: Services, principal: Principal, job_ids: list[uuid.UUID]) -> None:
    """A submitter may touch its own org's jobs only; another org's job is answered exactly as a job
    that does not exist, so it cannot learn that it does."""
    if principal.role is not Role.SUBMITTER:
        return
    hidden = [job["id"] for job in await jobs.get_many(services.queue, job_ids) if not principal.sees(job["org_id"])]
    if hidden:
        missing = [str(job_id) for job_id in hidden]
        raise NotFound(f"no job {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""), job_ids=missing)


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post(
        "",
        status_code=201,
        summary="Submit one job, or a list of 1-10,000 jobs in one transaction",
        description="With an `Idempotency-Key` header, sending the same submission again returns the jobs the "
        "first one made (status 200, header `Idempotent-Replayed: true`); the same key with a different "
        "submission is a 409.",
        responses={
            200: ResponseSpec(
                data_container=JobOut | list[JobOut],
                description="A replay: the jobs the first submission with this Idempotency-Key made",
                generate_examples=False,
            )
        },
    )
    async def submit(
        self,
        services: ServicesDep,
        principal: PrincipalDep,
        data: JSONBody[JobIn | JobsIn],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(name="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
        ] = None,
    ) -> Response[JobOut | list[JobOut]]:
        if isinstance(data, list):
            check_bulk(data)
            for index, job in enumerate(data):
                principal.require_org(job.org_id, f"[{index}].org_id")
        else:
            principal.require_org(data.org_id)
        specs = [_spec(j) for j in data] if isinstance(data, list) else [_spec(data)]
        submitted = await jobs.submit(
            services.queue, specs, idempotency_key, auto_create_orgs=services.settings.auto_create_orgs
        )
        created = [new_job_out(j) if isinstance(j, jobs.NewJob) else job_out(j) for j in submitted.jobs]
        body = created if isinstance(data, list) else created[0]
        headers = {}
        for warning in submitted.warnings:
            log.warning("submit: %s", warning)
        if submitted.warnings:  # a header, so the answer's body keeps its shape; ASCII, as headers must be
            headers["Qualgent-Warning"] = " | ".join(submitted.warnings).encode("ascii", "backslashreplace").decode()
        if submitted.replayed:
            return Response(body, status_code=200, headers={"Idempotent-Replayed": "true"})
        return Response(body, status_code=201, headers=headers)

    @get("", summary="List jobs, newest first")
    async def list_jobs(
        self,
        services: ServicesDep,
        principal: PrincipalDep,
        org_id: IdentifierQuery = None,
        status: FromQuery[JobStatus | None] = None,
        app_version_id: IdentifierQuery = None,
        target: FromQuery[Target | None] = None,
        group_id: FromQuery[uuid.UUID | None] = None,
        before: Annotated[uuid.UUID | None, QueryParameter(description="a job id: list the jobs older than it")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    ) -> list[JobOut]:
        org_id = principal.org_filter(org_id)
        rows = await jobs.list_jobs(
            services.queue, JobFilter(org_id, status, app_version_id, target, group_id, before, limit)
        )
        return [job_out(r) for r in rows]

    @get("/queue/status", summary="What is waiting and running, by priority, target, org and group")
    async def queue_status(self, services: ServicesDep) -> dict[str, object]:
        return await stats.queue_status(services.db)

    @get("/{job_id:uuid}/wait", summary="Long-poll: the job as soon as it is final, or as it is at the timeout")
    async def wait(
        self,
        services: ServicesDep,
        principal: PrincipalDep,
        job_id: FromPath[uuid.UUID],
        timeout: Annotated[float, QueryParameter(ge=0, le=300, description="seconds")] = 30.0,
    ) -> JobOut:
        await _require_visible(services, principal, [job_id])
        return (
            await _with_queue(
                services, [job_out(await waiting.wait_for_job(services.queue, services.hub, job_id, timeout))]
            )
        )[0]

    @post("/wait", status_code=200, summary="Long-poll many jobs: answer when any status differs from the one given")
    async def wait_many(self, services: ServicesDep, principal: PrincipalDep, data: JSONBody[WaitIn]) -> WaitOut:
        await _require_visible(services, principal, list(data.jobs))
        known = {job_id: (status.value if status else None) for job_id, status in data.jobs.items()}
        current, changed = await waiting.wait_for_change(services.queue, services.hub, known, data.timeout)
        shown = await _with_queue(services, [job_out(job) for job in current])
        pending_targets = {job.target.value for job in shown if job.status == JobStatus.PENDING}
        unserved = await agents.targets_without_online_agent(services.queue, pending_targets)
        return WaitOut(
            changed=changed,
            jobs=shown,
            groups_ahead={job.id: job.queue.groups_ahead for job in shown if job.queue is not None},
            no_agent_for=[Target(t) for t in unserved],
        )

    @get("/{job_id:uuid}", summary="A job, with its attempts")
    async def get_job(self, services: ServicesDep, principal: PrincipalDep, job_id: FromPath[uuid.UUID]) -> JobOut:
        await _require_visible(services, principal, [job_id])
        return (await _with_queue(services, [job_out(await jobs.get(services.queue, job_id, with_attempts=True))]))[0]

    @put("/{job_id:uuid}/status", summary="Cancel (`cancelled`) or re-queue a finished job (`pending`)")
    async def set_status(
        self, services: ServicesDep, principal: PrincipalDep, job_id: FromPath[uuid.UUID], data: JSONBody[JobStatusIn]
    ) -> JobOut:
        await _require_visible(services, principal, [job_id])
        if data.status == JobStatus.CANCELLED:
            return job_out(await jobs.cancel(services.queue, job_id))
        if data.status == JobStatus.PENDING:
            return job_out(await jobs.rerun(services.queue, job_id))
        raise InvalidInput(
            f"status {data.status.value!r} is reported by agents through their claim; "
            "here you may set 'cancelled' or 'pending'",
            field="status",
        )

    @delete("/{job_id:uuid}", status_code=200, summary="Cancel a job")
    async def cancel(self, services: ServicesDep, principal: PrincipalDep, job_id: FromPath[uuid.UUID]) -> JobOut:
        await _require_visible(services, principal, [job_id])
        return job_out(await jobs.cancel(services.queue, job_id))


async def _with_queue(services: Services, shown: list[JobOut]) -> list[JobOut]:
    """Pending jobs with their place in the queue and ETA (qualgent.server.queue.history)."""
    pending = [job.group_id for job in shown if job.status == JobStatus.PENDING]
    found = await history.estimates(services.queue, pending)
    for job in shown:
        if (estimate := found.get(job.group_id)) is not None:
            job.queue = QueueOut(estimate.groups_ahead, estimate.eta_seconds, estimate.agents_online)
    return shown
