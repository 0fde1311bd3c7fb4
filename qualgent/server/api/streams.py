"""The Server-Sent Events stream of job status changes (GET /api/events).

Each notification names changed job ids and their org. A stream subscribes for the org its token may see (a
submitter's own; an admin's filter, or every org), so the hub hands it nothing of other orgs: they cost it no read
and no work at all. For a notification it may see, the jobs are read once for every stream that wants them (the
read is shared through the payload, which all streams receive as one object) and each stream sends one `job` event
per job that passes its filters. After a reconnect of the LISTEN connection the stream sends `resync`: changes may
have been missed, so a client re-reads what it cares about. When the stream opens with a job filter, it first sends
those jobs' current state, so a client that reconnects misses nothing about them.

A stream opened with a token ends when the token is revoked: every change to api_tokens is announced (migration
0012), and the stream then checks its token; it sends `closed` with the reason and ends. Streams per token are
capped (the controller answers 429 past the cap; one that slips past it in a race is closed at once the same way).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from litestar.response import ServerSentEventMessage

from qualgent.domain import NotFound
from qualgent.server.db.database import Database
from qualgent.server.notify.hub import Hub
from qualgent.server.queue import jobs, tokens
from qualgent.server.queue.core import Queue

KEEPALIVE_SECONDS = 15.0
_FIELDS = ("id", "org_id", "app_version_id", "test_path", "target", "priority", "status", "attempts", "group_id")


@dataclass(frozen=True, slots=True)
class StreamOwner:
    """Whose stream it is: `key` counts its streams against `max_streams`; `token_id` (None for the admin token
    of the environment, or no authentication) is checked whenever api_tokens changes."""

    key: str
    max_streams: int
    token_id: uuid.UUID | None = None
    db: Database | None = None  # where the token is checked


@dataclass(frozen=True, slots=True)
class EventFilter:
    job_ids: frozenset[uuid.UUID] = frozenset()
    org_id: str | None = None

    def accepts(self, job: dict[str, Any]) -> bool:
        if self.job_ids and job["id"] not in self.job_ids:
            return False
        return self.org_id is None or job["org_id"] == self.org_id


def _event(job: dict[str, Any], sequence: int, status: str | None = None) -> ServerSentEventMessage:
    """A job's event; `status` is the one its notification announced (the row, read a moment later, may have moved
    on already: each change is told as it was, in order)."""
    data = {name: str(getattr(job[name], "value", job[name])) for name in _FIELDS}
    data["attempts"] = job["attempts"]
    if status is not None:
        data["status"] = status
    return ServerSentEventMessage(data=json.dumps(data), event="job", id=sequence)


async def _read(q: Queue, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    try:
        return await jobs.get_many(q, ids)
    except NotFound:  # a job deleted by retention between the notification and now
        found = []
        for job_id in ids:
            try:
                found.append(await jobs.get(q, job_id))
            except NotFound:
                continue
        return found


def _closed(reason: str, sequence: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=json.dumps({"reason": reason}), event="closed", id=sequence)


async def stream(q: Queue, hub: Hub, filters: EventFilter, owner: StreamOwner) -> AsyncIterator[ServerSentEventMessage]:
    sequence = 0
    with hub.subscribe(filters.org_id, owner.key, watches_tokens=owner.token_id is not None) as subscription:
        if hub.streams_of(owner.key) > owner.max_streams:  # opened in a race past the controller's check
            yield _closed(f"too many streams: at most {owner.max_streams} per token", 1)
            return
        yield ServerSentEventMessage(comment="subscribed", data=None)  # from here on, no change is missed
        for job in await _current(q, filters):
            sequence += 1
            yield _event(job, sequence)
        while True:
            try:
                payload = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            kind = payload.get("kind")
            if kind == "resync":
                sequence += 1
                yield ServerSentEventMessage(data=json.dumps(payload), event="resync", id=sequence)
                if hub.closing:
                    return  # the server is shutting down: the client reconnects (to another server)
            if kind in ("resync", "tokens") and not await _token_live(owner):
                yield _closed("token revoked", sequence + 1)
                return
            status = payload.get("status")
            for job in await _changed_jobs(q, filters, payload):
                sequence += 1
                yield _event(job, sequence, status if isinstance(status, str) else None)


async def _current(q: Queue, filters: EventFilter) -> list[dict[str, Any]]:
    """The filter's jobs as they are now (another org's are left out, for a stream scoped to one org)."""
    if not filters.job_ids:
        return []
    return [job for job in await _read(q, sorted(filters.job_ids)) if filters.accepts(job)]


async def _token_live(owner: StreamOwner) -> bool:
    """api_tokens changed (or changes may have been missed): is the stream's token still live?"""
    if owner.token_id is None or owner.db is None:
        return True
    return await tokens.is_live(owner.db, owner.token_id)


_SHARED_READ = "_read"  # where the first stream to need a notification's jobs leaves the read, for the others


async def _changed_jobs(q: Queue, filters: EventFilter, payload: dict[str, Any]) -> list[dict[str, Any]]:
    if payload.get("kind") != "jobs":
        return []
    named = payload.get("ids", ())
    if filters.job_ids and not any(uuid.UUID(i) in filters.job_ids for i in named):
        return []
    org_id = payload.get("org_id")
    if filters.org_id is not None and org_id is not None and org_id != filters.org_id:
        return []  # (the hub gave it none of those; a payload of no org is filtered after the read)
    read = payload.get(_SHARED_READ)
    if read is None:
        read = payload[_SHARED_READ] = asyncio.ensure_future(_read(q, [uuid.UUID(i) for i in named]))
        read.add_done_callback(_retrieved)
    return [job for job in await asyncio.shield(read) if filters.accepts(job)]


def _retrieved(read: asyncio.Future[list[dict[str, Any]]]) -> None:
    """A shared read whose streams all went away: its error, if any, is nobody's to raise."""
    if not read.cancelled():
        read.exception()
