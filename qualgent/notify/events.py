"""The Server-Sent Events stream of job status changes (GET /api/events).

Each notification names changed job ids; the stream reads those jobs once (one query per notification,
only for streams that exist) and sends one `job` event per job that passes the filters. After a reconnect
of the LISTEN connection the stream sends `resync`: changes may have been missed, so a client re-reads
what it cares about. When the stream opens with a job filter, it first sends those jobs' current state,
so a client that reconnects misses nothing about them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from litestar.response import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.domain import NotFound
from qualgent.notify.hub import Hub
from qualgent.queue import jobs

KEEPALIVE_SECONDS = 15.0
_FIELDS = ("id", "org_id", "app_version_id", "test_path", "target", "priority", "status", "attempts", "group_id")


@dataclass(frozen=True, slots=True)
class EventFilter:
    job_ids: frozenset[uuid.UUID] = frozenset()
    org_id: str | None = None

    def accepts(self, job: dict[str, Any]) -> bool:
        if self.job_ids and job["id"] not in self.job_ids:
            return False
        return self.org_id is None or job["org_id"] == self.org_id


def _event(job: dict[str, Any], sequence: int) -> ServerSentEventMessage:
    data = {name: str(getattr(job[name], "value", job[name])) for name in _FIELDS}
    data["attempts"] = job["attempts"]
    return ServerSentEventMessage(data=json.dumps(data), event="job", id=sequence)


async def _read(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    try:
        return await jobs.get_many(engine, ids)
    except NotFound:  # a job deleted by retention between the notification and now
        found = []
        for job_id in ids:
            try:
                found.append(await jobs.get(engine, job_id))
            except NotFound:
                continue
        return found


async def stream(engine: AsyncEngine, hub: Hub, filters: EventFilter) -> AsyncIterator[ServerSentEventMessage]:
    sequence = 0
    with hub.subscribe() as subscription:
        if filters.job_ids:
            for job in await _read(engine, sorted(filters.job_ids)):
                if not filters.accepts(job):  # another org's job, for a stream scoped to one org
                    continue
                sequence += 1
                yield _event(job, sequence)
        while True:
            try:
                payload = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if payload.get("kind") == "resync":
                sequence += 1
                yield ServerSentEventMessage(data=json.dumps(payload), event="resync", id=sequence)
                if hub.closing:
                    return  # the server is shutting down: the client reconnects (to another server)
                continue
            for job in await _changed_jobs(engine, filters, payload):
                sequence += 1
                yield _event(job, sequence)


async def _changed_jobs(engine: AsyncEngine, filters: EventFilter, payload: dict[str, Any]) -> list[dict[str, Any]]:
    if payload.get("kind") != "jobs":
        return []
    ids = [uuid.UUID(i) for i in payload.get("ids", ())]
    if filters.job_ids:
        ids = [i for i in ids if i in filters.job_ids]
    return [job for job in await _read(engine, ids) if filters.accepts(job)] if ids else []
