"""The agent's side of batched reporting: a group's starts and results go to the server as they happen,
with one request in flight at a time; whatever happens while a request is in flight rides on the next one.

An event waits at most LINGER_SECONDS for others to join it (as River's batch completer does): a suite of long
tests reports each start and each result a moment late, which nobody sees, while a suite of quick tests reports
many jobs per request and per commit. What comes while a request is in flight lingers too, counted from when it
came: sent as soon as a round trip ended, a suite of very quick tests would go out a run or two a request, a round
trip apart, and the server would pay a request per run.

A start also waits until it is LINGER_SECONDS old, unless its result has come (or the group is over): a test over
within the linger is then reported once, start and result together, which the server writes in one statement
and one row version (qualgent_report_runs). Without that wait, a suite of quick tests would send every report
with the start of the test then running and not its result, and every report would take the server's general
path. LINGER_SECONDS is long enough for a quick test to end inside it and short enough for nobody to notice
(docs/performance.md gives the figures)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from qualgent import logs
from qualgent.agent.client import AgentClient, ServerConflict, ServerRejected
from qualgent.agent.clock import lease_clock

log = logging.getLogger("qualgent.agent")

MAX_BATCH = 1000  # the server's bound on starts and on results per request
LINGER_SECONDS = 0.025
FULL_BATCH = 100  # sent at once, without lingering
UNREACHABLE_ROUNDS = 3  # leases of retries a report is kept through while the server is out of reach (a restart)


class Reporter:
    """Reports one claimed group's progress. `start()` answers a future that says whether the server
    accepted the start (False: the job was cancelled or moved since the claim; the agent stops its run)."""

    def __init__(
        self,
        client: AgentClient,
        agent_id: str,
        group_id: str,
        token: str,
        lease_seconds: float,
        on_lost: Callable[[], Any],
        on_renewed: Callable[[float], Any] | None = None,
    ) -> None:
        self._client = client
        self._path = f"/agents/{agent_id}/groups/{group_id}/progress"
        self._token = token
        self._retry_for = lease_seconds
        self._on_lost = on_lost
        self._on_renewed = on_renewed  # told when a report the server accepted was sent: it renewed the lease
        self._unreachable = 0  # reports in a row that could not reach the server
        self.next_claim_sent_at = 0.0  # when the report that claimed next_claim was sent (loop.lease_clock)
        self._starts: list[tuple[str, float]] = []  # job id, monotonic start time
        self._results: list[tuple[dict[str, Any], float]] = []  # result, monotonic time it came
        self._accepted: dict[str, asyncio.Future[bool]] = {}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()  # a full batch or the group's end: no more lingering
        self._closing = False
        self._then_claim = False
        self._held_builds: list[dict[str, str]] = []
        self.lost = False
        self.reported = 0  # results the server recorded
        self.next_claim: dict[str, Any] | None = None  # the agent's next group, claimed by the last report
        self._task = asyncio.create_task(self._send_loop(), name=f"reporter {group_id}")

    def start(self, job_id: str) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.lost:
            future.set_result(False)
            return future
        self._accepted[job_id] = future
        self._starts.append((job_id, time.monotonic()))
        self._queued()
        return future

    def result(self, job_id: str, result: dict[str, Any]) -> None:
        if not self.lost:
            self._results.append(({"job_id": job_id, **result}, time.monotonic()))
            self._queued()

    def _queued(self) -> None:
        self._wake.set()
        if len(self._starts) + len(self._results) >= FULL_BATCH:
            self._full.set()

    async def close(self, then_claim: bool = False, held_builds: list[dict[str, str]] | None = None) -> None:
        """Send what is left and stop. `then_claim`: the last report also claims the agent's next group (if it
        closes this one and work is waiting): `next_claim`, one request where there were two; `held_builds` go
        with that claim (the builds the agent holds installed)."""
        self._then_claim = then_claim
        self._held_builds = held_builds or []
        self._closing = True
        self._wake.set()
        self._full.set()
        await self._task

    async def _send_loop(self) -> None:
        while not self.lost and not (self._closing and not (self._starts or self._results)):
            if not (self._starts or self._results):
                await self._wake.wait()
                self._wake.clear()
                continue
            # A report goes when its oldest event is LINGER_SECONDS old, with whatever came meanwhile (during a
            # round trip too: sent as soon as one ended, a suite of quick tests went two runs a request), sooner when
            # the batch is full or the group is over. A start still younger than that whose result has not come
            # stays for the next report, which its own age brings on by then.
            oldest = min(at for _, at in itertools.chain(self._starts, self._results))
            linger = LINGER_SECONDS - (time.monotonic() - oldest)
            if linger > 0 and not self._closing and len(self._starts) + len(self._results) < FULL_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), linger)
            self._full.clear()
            if self._results or len(self._starts) > len(self._young_starts()):  # (a timer may fire a hair early)
                await self._send_one()
        for future in self._accepted.values():  # never left hanging
            if not future.done():
                future.set_result(False)

    def _young_starts(self) -> set[str]:
        """Starts that wait for their result: younger than LINGER_SECONDS, no result yet, the group not over."""
        if self._closing or not self._starts:
            return set()
        now = time.monotonic()
        ended = {result["job_id"] for result, _ in self._results}
        return {job_id for job_id, at in self._starts if job_id not in ended and now - at < LINGER_SECONDS}

    def _then_claim_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"then_claim": True}
        if self._held_builds:
            fields["held_builds"] = self._held_builds
        return fields

    async def _send_one(self) -> None:
        young = self._young_starts()
        now = time.monotonic()
        waiting = [(job_id, at) for job_id, at in self._starts if job_id in young]
        ready = [(job_id, at) for job_id, at in self._starts if job_id not in young]
        starts, self._starts = ready[:MAX_BATCH], ready[MAX_BATCH:] + waiting
        # A result goes with (or after) its job's start: the server applies starts first.
        taken, self._results = self._results[:MAX_BATCH], self._results[MAX_BATCH:]
        results = [r for r, _ in taken]
        body: dict[str, Any] = {
            "token": self._token,
            "started": [{"job_id": j, "elapsed_ms": int((now - at) * 1000)} for j, at in starts],
            "results": results,
        }
        if self._closing and self._then_claim and not (self._starts or self._results):
            body.update(self._then_claim_fields())  # the group's last report
        sent_at = lease_clock()
        try:
            answer = await self._client.call("POST", self._path, body, retry_for=self._retry_for)
        except ServerConflict as conflict:
            log.warning("progress of the group not recorded: %s", conflict)
            if conflict.stale_claim:
                self._lose()
            return
        except ConnectionError as err:
            if self._keep(starts, taken, err):
                return
            log.error("progress of the group not recorded: %s", err)
            for job_id, _ in starts:
                self._settle(job_id, False)
            return
        except ServerRejected as err:
            log.error("progress of the group not recorded: %s", err)
            for job_id, _ in starts:
                self._settle(job_id, False)
            return
        self._recorded(answer, sent_at)

    def _keep(
        self, starts: list[tuple[str, float]], results: list[tuple[dict[str, Any], float]], err: Exception
    ) -> bool:
        """The server was out of reach for a whole lease (restarting, say): keep the report for the next try, as
        the runs it tells of happened (once back, the server records them even if the claim is gone). Given up
        after UNREACHABLE_ROUNDS leases, so that an agent told to stop does not wait for ever."""
        self._unreachable += 1
        if self._unreachable > UNREACHABLE_ROUNDS:
            return False
        log.warning("progress of the group not sent yet (%s); trying again", err)
        self._starts[:0] = starts
        self._results[:0] = results
        return True

    def _recorded(self, answer: dict[str, Any], sent_at: float) -> None:
        """The server recorded a report sent at `sent_at` (which renewed the claim's lease)."""
        self._unreachable = 0
        for job in answer["started"]:
            self._settle(job["id"], True)
        for refusal in answer["refused"]:
            self._settle(refusal["job_id"], False)
            logs.bind(job_id=refusal["job_id"])  # this task's own context: the agent's is untouched
            log.info("job %s: %s", refusal["job_id"], refusal["detail"])
        if log.isEnabledFor(logging.INFO):  # a quick suite reports dozens of jobs a request
            for job in answer["reported"]:
                logs.bind(job_id=job["id"])
                log.info("job %s %s (attempt %d)", job["id"], job["status"], job["attempts"])
        self.reported += len(answer["reported"])
        if answer.get("next"):
            self.next_claim, self.next_claim_sent_at = answer["next"], sent_at
        if self._on_renewed is not None:
            self._on_renewed(sent_at)

    def _settle(self, job_id: str, accepted: bool) -> None:
        future = self._accepted.pop(job_id, None)
        if future is not None and not future.done():
            future.set_result(accepted)

    def _lose(self) -> None:
        self.lost = True
        self._starts.clear()
        self._results.clear()
        with contextlib.suppress(Exception):
            self._on_lost()
