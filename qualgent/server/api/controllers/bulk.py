"""Bulk actions: cancel or re-queue every job a filter selects, decided by the server in one request."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, post
from litestar.params import JSONBody
from msgspec import Meta, Struct

from qualgent.domain import JobStatus, Target
from qualgent.server.api.auth import PrincipalDep
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import Identifier
from qualgent.server.queue import selection
from qualgent.server.queue.selection import Selection

SearchText = Annotated[str, Meta(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$(?!\n)")]


class JobSelectionIn(Struct, forbid_unknown_fields=True):
    """Which jobs: every field given must match; at least one of org_id, app_version_id, group_id."""

    org_id: Identifier | None = None
    app_version_id: Identifier | None = None
    group_id: uuid.UUID | None = None
    target: Target | None = None
    status: Annotated[list[JobStatus], Meta(max_length=5)] | None = None
    test_path: Annotated[SearchText, Meta(description="matches any part of the test path, ignoring case")] | None = None


class BulkOut(Struct):
    count: int
    job_ids: list[uuid.UUID]


def to_selection(data: JobSelectionIn, org_id: str | None) -> Selection:
    return Selection(org_id, data.app_version_id, data.group_id, data.target, tuple(data.status or ()), data.test_path)


class BulkJobController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @post(
        "/cancel",
        status_code=200,
        summary="Cancel every pending or running job a filter selects, in one transaction",
        description="A build (`org_id` + `app_version_id`), a group (`group_id`), narrowed by `status`, `target` "
        "and `test_path`. A submitter's filter is kept to its own org.",
    )
    async def cancel(self, services: ServicesDep, principal: PrincipalDep, data: JSONBody[JobSelectionIn]) -> BulkOut:
        done = await selection.cancel(services.db, to_selection(data, principal.org_filter(data.org_id)))
        return BulkOut(len(done.job_ids), done.job_ids)

    @post(
        "/retry",
        status_code=200,
        summary="Re-queue every finished job a filter selects (failed and cancelled unless `status` says)",
        description="Each job gets a fresh budget of attempts and keeps its history. "
        "A submitter's filter is kept to its own org.",
    )
    async def retry(self, services: ServicesDep, principal: PrincipalDep, data: JSONBody[JobSelectionIn]) -> BulkOut:
        done = await selection.retry(services.db, to_selection(data, principal.org_filter(data.org_id)))
        return BulkOut(len(done.job_ids), done.job_ids)
