"""What the queue learns from finished work, and the estimates it gives from it.

History is written once per finished group (`record_group`: one statement upserting its tests' moving mean
durations and when they last failed, and its build's install time the first time the build is seen), sampled under
load (`record_group_soon`), never by triggers on the hot tables. Estimates (`estimates`) give a pending group its
place in the queue and an ETA: the expected work ahead of it on its target (each job counts the org's median test
duration there, 30 s when none is known, and each group its build's install time when known), plus the work left
on the target's running groups, shared by the agents online for the target (at most its cap)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from qualgent.server.db.database import Database
from qualgent.server.db.sql import P
from qualgent.server.queue._common import OFFLINE_AFTER_LEASES
from qualgent.server.queue.core import Queue

log = logging.getLogger(__name__)


async def record_group(db: Database, group_id: uuid.UUID) -> None:
    """Fold a finished group's runs into the history (after the report that closed it committed)."""
    await db.execute(P.record_group_history, {"group_id": group_id})


_recording: set[asyncio.Task[None]] = set()
_last_started = 0.0
# Under load history is sampled: a server writes at most this many groups' history a second, one at a time, and
# always a group whose closing report holds a failure. A fleet of real devices closes a few groups a second (tests
# of tens of seconds); a suite of millisecond tests closes hundreds, all of the same tests, whose means one sample a
# tenth of a second keeps as well. (Every group's write cost a quick suite a fifth of its throughput in qgjob bench.)
SAMPLES_PER_SECOND = 10.0


def record_group_soon(db: Database, group_id: uuid.UUID, failed: bool = False) -> bool:
    """record_group beside the answer to the agent rather than before it: history is for estimates, and a quick
    suite's agent waits for its report's answer (its next claim) once a group. A failure is logged, not raised.
    False when the group is left out (see SAMPLES_PER_SECOND)."""
    global _last_started
    loop = asyncio.get_running_loop()
    if not failed and (_recording or loop.time() - _last_started < 1 / SAMPLES_PER_SECOND):
        return False
    _last_started = loop.time()
    task = loop.create_task(_record_logged(db, group_id))
    _recording.add(task)
    task.add_done_callback(_recording.discard)
    return True


async def _record_logged(db: Database, group_id: uuid.UUID) -> None:
    try:
        await record_group(db, group_id)
    except Exception:  # the queue goes on without this sample
        log.warning("history of group %s not recorded", group_id, exc_info=True)


async def recorded() -> None:
    """Wait for the history writes in flight (tests; a server's shutdown)."""
    while _recording:
        await asyncio.gather(*list(_recording), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    groups_ahead: int
    eta_seconds: float | None  # None: no online agent serves the target (or its cap is 0)
    agents_online: int
    target: str


class _Estimated(msgspec.Struct, frozen=True):
    """A queue_estimates row."""

    id: uuid.UUID
    target: str
    ahead: int
    work_ms: float
    running_ms: float
    agents_online: int
    max_running: int | None


async def estimates(q: Queue, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, QueueEstimate]:
    """Queue position and ETA of pending groups (others are left out)."""
    if not group_ids:
        return {}
    params = {"group_ids": list(set(group_ids)), "offline_after": OFFLINE_AFTER_LEASES * q.lease_seconds}
    found = {}
    for r in await q.db.rows(P.queue_estimates, params, _Estimated):
        slots = r.agents_online if r.max_running is None else min(r.agents_online, r.max_running)
        eta = None if slots == 0 else round((r.work_ms + r.running_ms) / slots / 1000, 1)
        found[r.id] = QueueEstimate(r.ahead, eta, r.agents_online, r.target)
    return found
