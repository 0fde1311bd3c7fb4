"""One LISTEN connection per server process, fanned out to in-process waiters.

Waiters never hold a database connection while they wait: they hold an asyncio.Event that the hub sets
when a notification names what they wait on. Whenever the hub (re)connects, it wakes every waiter, and
each one re-reads the state it waits on: a notification lost while the connection was down can delay
nothing longer than the reconnect. A waiter also re-reads on its own every `safety_interval`, so even a
silently lost notification cannot leave it hanging.

A dead connection that looks alive (a half-open TCP socket) is found by a probe query whenever the
channel has been quiet for `probe_interval`.

Event streams subscribe by org: a job change (its notification names the org of its jobs, qualgent/server/db/schema.sql)
reaches only the streams of that org and those that see every org, so one org's streams cost other orgs nothing.

The hub also counts changes to api_tokens (`token_generation`): every `tokens` notification (a trigger sends one
for any change to the table) and every (re)connect or disconnect moves it on. The token cache
(qualgent.server.queue.tokens.TokenCache) trusts what it holds only while the hub is connected and the count has not
moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from qualgent.aio import cancel_and_wait
from qualgent.server.db.engine import libpq_url
from qualgent.server.db.sql import NOTIFY

CHANNEL = "qualgent"  # the channel db/notify.sql listens on
APPLICATION_NAME = "qgjob server listen"  # tells it apart from the pool's "qgjob server" in pg_stat_activity

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Waiter:
    """Set when something it watches changed, or when the hub reconnected (re-read everything)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    sleeping: bool = False  # parked in wait(), as opposed to reading the state it waits on

    def wake(self) -> None:
        self.event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if woken. Clears the flag for the next round."""
        self.sleeping = True
        try:
            await asyncio.wait_for(self.event.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            return False
        finally:
            self.sleeping = False
            self.event.clear()
        return True


@dataclass(eq=False)
class Subscription:
    """A stream of notifications (for SSE), in order, bounded: the job changes of its org (all orgs: None), a
    `tokens` marker when api_tokens changed (for a stream opened with a token), `resync` when changes may have been
    missed. On overflow the oldest are dropped and a `resync` marker tells the reader to re-read."""

    org_id: str | None = None
    key: str = ""  # whose stream it is (a token, or an address), for the cap on streams per token
    watches_tokens: bool = False
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def put(self, payload: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait({"kind": "resync", "reason": "overflow"})


class Hub:
    def __init__(
        self,
        database_url: str,
        *,
        safety_interval: float = 15.0,
        probe_interval: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._conninfo = libpq_url(database_url)
        self.safety_interval = safety_interval
        self.probe_interval = probe_interval
        self.max_backoff = max_backoff
        self.connected = False
        self.closing = False
        self.reconnects = 0
        self.delivered = 0
        self.token_generation = 0
        self._jobs: dict[str, set[Waiter]] = defaultdict(set)
        self._work: dict[str, set[Waiter]] = defaultdict(set)
        self._subscriptions: set[Subscription] = set()
        self._streams_by_org: dict[str | None, set[Subscription]] = defaultdict(set)
        self._streams_by_key: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, ready_timeout: float = 5.0) -> None:
        """Start listening; wait briefly for the first connection (waiting works without it too)."""
        self._task = asyncio.create_task(self._run(), name="qualgent-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), ready_timeout)

    def close_waiters(self) -> None:
        """The server is shutting down: every waiter answers now with what it has (a long-poll returns the
        job as it is, a waiting claim returns no work), so draining does not wait out long-polls."""
        self.closing = True
        self._wake_everyone("server shutting down")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        self.connected = False

    # -- what waiters use ------------------------------------------------------------------------

    @contextlib.contextmanager
    def watch_jobs(self, job_ids: Iterable[Any]) -> Iterator[Waiter]:
        ids = {str(job_id) for job_id in job_ids}
        waiter = Waiter()
        for job_id in ids:
            self._jobs[job_id].add(waiter)
        try:
            yield waiter
        finally:
            for job_id in ids:
                watchers = self._jobs.get(job_id)
                if watchers is not None:
                    watchers.discard(waiter)
                    if not watchers:
                        del self._jobs[job_id]

    @contextlib.contextmanager
    def watch_work(self, targets: Iterable[str]) -> Iterator[Waiter]:
        wanted = set(targets)
        waiter = Waiter()
        for target in wanted:
            self._work[target].add(waiter)
        try:
            yield waiter
        finally:
            for target in wanted:
                self._work[target].discard(waiter)

    @contextlib.contextmanager
    def subscribe(
        self, org_id: str | None = None, key: str = "", watches_tokens: bool = False
    ) -> Iterator[Subscription]:
        """A stream of `org_id`'s job changes (None: every org's), counted under `key` (streams_of)."""
        subscription = Subscription(org_id, key, watches_tokens)
        self._subscriptions.add(subscription)
        self._streams_by_org[org_id].add(subscription)
        self._streams_by_key[key] += 1
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            streams = self._streams_by_org[org_id]
            streams.discard(subscription)
            if not streams:
                del self._streams_by_org[org_id]
            self._streams_by_key[key] -= 1
            if self._streams_by_key[key] <= 0:
                del self._streams_by_key[key]

    def streams_of(self, key: str) -> int:
        """Streams open under this key in this process."""
        return self._streams_by_key.get(key, 0)

    def safety_timeout(self, remaining: float) -> float:
        """How long a waiter may sleep before re-reading on its own: jittered so waiters spread out."""
        return min(remaining, self.safety_interval * random.uniform(0.8, 1.0))

    @property
    def waiters(self) -> int:
        """Waiters parked right now: asleep until a notification, not in the middle of a read."""
        parked = {w for ws in (*self._jobs.values(), *self._work.values()) for w in ws if w.sleeping}
        return len(parked)

    @property
    def job_waiters(self) -> int:
        """Of those, the ones waiting on jobs (not agents waiting for work)."""
        return len({w for ws in self._jobs.values() for w in ws if w.sleeping})

    # -- the listening loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
                ) as conn:
                    await conn.execute(NOTIFY.listen)
                    self.connected = True
                    self._ready.set()
                    backoff = 0.1
                    self._wake_everyone("connected")
                    await self._listen(conn)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any failure of the connection: reconnect
                if self.connected:
                    log.warning("LISTEN connection lost (%s); reconnecting", str(err).splitlines()[0] if err else err)
                self.connected = False
                self._wake_everyone("disconnected")
                self.reconnects += 1
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(self.max_backoff, backoff * 2)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            quiet = True
            async for notification in conn.notifies(timeout=self.probe_interval):
                quiet = False
                self._dispatch(notification.payload)
            if quiet:  # nothing for a while: make sure the connection is really alive
                await asyncio.wait_for(conn.execute(NOTIFY.probe), timeout=5)

    def _dispatch(self, raw: str) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            log.warning("ignoring a malformed notification: %.200s", raw)
            return
        self.delivered += 1
        kind = payload.get("kind")
        if kind == "tokens":
            self._tokens_changed(payload)
        elif kind == "jobs":
            for job_id in payload.get("ids", ()):
                for waiter in self._jobs.get(job_id, ()):
                    waiter.wake()
            self._to_streams(payload)
        elif kind == "work":
            for target in payload.get("targets", ()):
                for waiter in self._work.get(target, ()):
                    waiter.wake()

    def _tokens_changed(self, payload: dict[str, Any]) -> None:
        """For the token cache, and for the streams opened with a token (is theirs revoked?)."""
        self.token_generation += 1
        for subscription in self._subscriptions:
            if subscription.watches_tokens:
                subscription.put(payload)

    def _to_streams(self, payload: dict[str, Any]) -> None:
        """A job change goes to the streams that may see its org, and no other: before anything is read for it,
        another org's change costs a stream nothing."""
        org_id = payload.get("org_id")
        if not isinstance(org_id, str):  # not from qualgent_notify_org_jobs: every stream decides for itself
            for subscription in self._subscriptions:
                subscription.put(payload)
            return
        for subscription in self._streams_by_org.get(None, ()):
            subscription.put(payload)
        for subscription in self._streams_by_org.get(org_id, ()):
            subscription.put(payload)

    def _wake_everyone(self, reason: str) -> None:
        self.token_generation += 1  # a notification may have been missed: cached tokens are re-read
        for waiters in (*self._jobs.values(), *self._work.values()):
            for waiter in waiters:
                waiter.wake()
        for subscription in self._subscriptions:
            subscription.put({"kind": "resync", "reason": reason})
