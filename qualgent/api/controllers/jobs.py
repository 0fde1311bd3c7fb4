from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from qualgent.api.deps import ServicesDep
from qualgent.api.schemas import JobIn, JobOut, JobsIn, JobStatusIn, job_out
from qualgent.domain import InvalidInput, JobStatus, Target
from qualgent.queue import jobs, stats
from qualgent.queue.jobs import JobFilter, JobSpec


def _spec(job: JobIn) -> JobSpec:
    return JobSpec(job.org_id, job.app_version_id, job.test_path, job.priority, job.target, job.max_attempts)


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post("", status_code=201, summary="Submit one job, or a list of jobs in one transaction")
    async def submit(self, services: ServicesDep, data: JSONBody[JobIn | JobsIn]) -> JobOut | list[JobOut]:
        specs = [_spec(j) for j in data] if isinstance(data, list) else [_spec(data)]
        rows = await jobs.submit(services.engine, specs)
        created = [job_out(r) for r in rows]
        return created if isinstance(data, list) else created[0]

    @get("", summary="List jobs, newest first")
    async def list_jobs(
        self,
        services: ServicesDep,
        org_id: FromQuery[str | None] = None,
        status: FromQuery[JobStatus | None] = None,
        app_version_id: FromQuery[str | None] = None,
        target: FromQuery[Target | None] = None,
        group_id: FromQuery[uuid.UUID | None] = None,
        before: Annotated[uuid.UUID | None, QueryParameter(description="a job id: list the jobs older than it")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    ) -> list[JobOut]:
        rows = await jobs.list_jobs(
            services.engine, JobFilter(org_id, status, app_version_id, target, group_id, before, limit)
        )
        return [job_out(r) for r in rows]

    @get("/queue/status", summary="What is waiting and running, by priority, target, org and group")
    async def queue_status(self, services: ServicesDep) -> dict[str, object]:
        return await stats.queue_status(services.engine)

    @get("/{job_id:uuid}", summary="A job, with its attempts")
    async def get_job(self, services: ServicesDep, job_id: FromPath[uuid.UUID]) -> JobOut:
        return job_out(await jobs.get(services.engine, job_id, with_attempts=True))

    @put("/{job_id:uuid}/status", summary="Cancel (`cancelled`) or re-queue a finished job (`pending`)")
    async def set_status(
        self, services: ServicesDep, job_id: FromPath[uuid.UUID], data: JSONBody[JobStatusIn]
    ) -> JobOut:
        if data.status == JobStatus.CANCELLED:
            return job_out(await jobs.cancel(services.engine, job_id))
        if data.status == JobStatus.PENDING:
            return job_out(await jobs.rerun(services.engine, job_id))
        raise InvalidInput(
            f"status {data.status.value!r} is reported by agents through their claim; "
            "here you may set 'cancelled' or 'pending'",
            field="status",
        )

    @delete("/{job_id:uuid}", status_code=200, summary="Cancel a job")
    async def cancel(self, services: ServicesDep, job_id: FromPath[uuid.UUID]) -> JobOut:
        return job_out(await jobs.cancel(services.engine, job_id))
