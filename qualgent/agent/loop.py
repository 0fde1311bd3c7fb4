"""The agent loop: register, heartbeat, claim whole groups, install once, run each job, report.

Rules it follows (docs/design.md):
- A failed install counts one infrastructure attempt for every job of the group (each is retried
  with backoff, up to its max_attempts), because the group cannot run without its app.
- The heartbeat runs beside the tests every third of the lease. If the server says a claim is lost,
  the running test is killed and the group dropped: another agent owns it now. If it says a running
  job was cancelled, that test's process tree is killed.
- SIGTERM/SIGINT: finish the current test, give the rest of the group back, deregister, exit 0.
  A second signal kills the current test too.
- No test (nor install) starts once the claim's lease may have lapsed, by the agent's own clock: the lease runs
  from when the last request that renewed it was sent (the claim, a heartbeat that found it held, a progress
  report the server accepted), and a start needs LEASE_USABLE of it left unspent. Past that, the agent asks the
  server first (a heartbeat): held, it goes on; lost, or no answer, it drops the group. A frozen agent that wakes
  up late (SIGSTOP, a stalled VM) so starts nothing in a group another agent may already be running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from qualgent import logs
from qualgent.agent import appwright
from qualgent.agent.client import AgentClient, ServerConflict, ServerRejected
from qualgent.agent.clock import lease_clock
from qualgent.agent.executor import Run, RunResult
from qualgent.agent.reporter import Reporter
from qualgent.agent.templates import CommandTemplate
from qualgent.aio import cancel_and_wait

log = logging.getLogger("qualgent.agent")

CLAIM_WAIT_SECONDS = 20.0  # long-poll; the HTTP timeout (30 s) must exceed it
LEASE_USABLE = 0.75  # of a lease: a test starts only this soon after the last renewal was sent

CANCEL_WATCH_DELAY = 0.5  # a test shorter than this is not watched for cancels (the heartbeat still is)


class Runner(Protocol):
    """What runs one command: `Run` (a process) in production, a no-op in `qgjob bench`."""

    async def execute(self) -> RunResult: ...

    async def stop(self) -> None: ...


@dataclass
class AgentConfig:
    api_url: str
    token: str | None
    targets: list[str]
    install: CommandTemplate | None
    run: CommandTemplate | None  # None with appwright: one Playwright run per group instead of a command per job
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    test_timeout: float = 900.0
    install_timeout: float = 600.0
    always_install: bool = False  # install every group's build, even the one the device holds already
    idle_poll_max: float = 2.0
    max_groups: int | None = None  # stop after this many groups (for scripted runs)
    runner: Callable[[list[str], float, dict[str, str]], Runner] = Run
    handle_signals: bool = True  # False when several agents share a process (qgjob bench)
    appwright: appwright.AppwrightSettings | None = None  # `--appwright` (qualgent/agent/appwright.py)


@dataclass
class _Current:
    group_id: str
    token: str
    job_id: str | None = None
    run: Runner | None = None
    lost: bool = False
    cancelled: set[str] = field(default_factory=set)
    renewed_at: float = 0.0  # lease_clock() when the last request that renewed the lease was sent

    def renewed(self, sent_at: float) -> None:
        self.renewed_at = max(self.renewed_at, sent_at)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = AgentClient(config.api_url, config.token)
        self.agent_id: str | None = None
        self.lease_seconds = 30.0
        self._current: _Current | None = None
        self._next: dict[str, Any] | None = None  # a group claimed by the last report of the one before
        # The build installed last per target, (org, app version): the server prefers its groups among equals and
        # this agent skips installing it again (docs/design.md, "Build affinity").
        self._held: dict[str, tuple[str, str]] = {}
        self._claim_sent_at = 0.0  # lease_clock() when the request that claimed the next group was sent
        self._stopping = asyncio.Event()
        self._rearm = asyncio.Event()  # a new claim: beat a third of its lease from now, at the server's cadence
        self._base_env = _base_env()
        self._signals = 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal)
        agent = await self.client.call("POST", "/agents", {"name": self.config.name, "targets": self.config.targets})
        self.agent_id = agent["id"]
        logs.bind(agent_id=self.agent_id)
        log.info("agent %s (%s) registered for %s", self.config.name, self.agent_id, ", ".join(self.config.targets))
        beat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        try:
            await self._work()
        finally:
            await cancel_and_wait(beat)  # its wait_for on the re-arm event can lose a plain cancel (Python 3.11)
            with contextlib.suppress(Exception):
                await self.client.call("DELETE", f"/agents/{self.agent_id}", retry_for=10)
            await self.client.close()
            log.info("agent %s stopped", self.agent_id)

    def stop(self) -> None:
        """As on SIGTERM: finish the current test, give the rest of the group back, deregister."""
        self._on_signal()

    def _on_signal(self) -> None:
        self._signals += 1
        self._stopping.set()
        if self._signals == 1:
            log.info("stopping: finishing the current test, then giving the rest back")
        elif self._current and self._current.run:
            log.info("stopping now: killing the current test")
            asyncio.get_running_loop().create_task(self._current.run.stop())

    async def _work(self) -> None:
        idle = 0.1
        groups = 0
        while not self._stopping.is_set():
            claim, self._next = self._next or await self._claim(), None
            if claim is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=idle)
                idle = min(self.config.idle_poll_max, idle * 2)
                continue
            idle = 0.1
            self.lease_seconds = float(claim.get("lease_seconds", self.lease_seconds))
            self._rearm.set()
            groups += 1
            last = self.config.max_groups is not None and groups >= self.config.max_groups
            await self._run_group(claim, then_claim=not last)
            if last:
                return

    async def _claim(self) -> dict[str, Any] | None:
        """Ask for a group; the server holds the request until work for our targets is announced (or
        CLAIM_WAIT_SECONDS pass), so an idle agent costs one request per CLAIM_WAIT_SECONDS. A stop
        signal abandons the request: a group the server claimed for us meanwhile goes back to the
        queue when we deregister."""
        self._claim_sent_at = lease_clock()
        request = asyncio.create_task(
            self.client.call(
                "POST",
                f"/agents/{self.agent_id}/claim",
                {"wait": CLAIM_WAIT_SECONDS, "held_builds": self._held_builds()},
            )
        )
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({request, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not request.done():
            with contextlib.suppress(Exception):
                await cancel_and_wait(request)
            return None
        claim: dict[str, Any] | None = request.result()
        return claim

    # -- one group -------------------------------------------------------------------------------

    async def _run_group(self, claim: dict[str, Any], then_claim: bool = True) -> None:
        current = self._current = _Current(claim["group_id"], claim["token"], renewed_at=self._claim_sent_at)
        jobs: list[dict[str, Any]] = claim["jobs"]
        logs.bind(group_id=claim["group_id"], org_id=claim["org_id"], app_version_id=claim["app_version_id"])
        log.info(
            "claimed group %s: %s %s for %s, %d job(s)",
            claim["group_id"],
            claim["org_id"],
            claim["app_version_id"],
            claim["target"],
            len(jobs),
        )
        assert self.agent_id is not None
        reporter = Reporter(
            self.client,
            self.agent_id,
            current.group_id,
            current.token,
            self.lease_seconds,
            lambda: self._lose(current),
            on_renewed=current.renewed,
        )
        try:
            install_error = await self._install(claim) if await self._lease_held(current) else None
            if self.config.appwright is not None and not current.lost:
                await appwright.run_group(self, self.config.appwright, claim, current, reporter, install_error)
            for job in jobs if self.config.appwright is None else []:
                if self._stopping.is_set() or current.lost or not await self._lease_held(current):
                    break
                await self._run_job(claim, job, install_error, reporter)
            # Every start and result is recorded before the next claim or the release; the last report claims the
            # next group itself unless we are stopping.
            self._next = await self._finish_reports(reporter, then_claim and not self._stopping.is_set())
            if self._stopping.is_set() and not current.lost:
                await self._release(current, "agent shutting down")
        finally:
            if not reporter.lost:
                await reporter.close()
            self._current = None
            logs.bind(group_id=None, org_id=None, app_version_id=None, job_id=None)

    async def _finish_reports(self, reporter: Reporter, then_claim: bool) -> dict[str, Any] | None:
        """Send the group's last reports; the next group, when the last one claimed it."""
        await reporter.close(then_claim, self._held_builds())
        self._claim_sent_at = reporter.next_claim_sent_at
        return reporter.next_claim

    def _held_builds(self) -> list[dict[str, str]]:
        return [{"target": t, "org_id": org, "app_version_id": version} for t, (org, version) in self._held.items()]

    async def _lease_held(self, current: _Current) -> bool:
        """May a test start? Yes while the lease is fresh by our own clock; past that, only once a heartbeat
        says the server still holds the claim for us (else the group is dropped)."""
        if current.lost:
            return False
        if lease_clock() - current.renewed_at < self.lease_seconds * LEASE_USABLE:
            return True
        log.warning(
            "the lease on group %s may have lapsed (last renewed %.1f s ago, lease %g s): asking the server",
            current.group_id,
            lease_clock() - current.renewed_at,
            self.lease_seconds,
        )
        try:
            await self._beat(current, retry_for=max(1.0, self.lease_seconds * (1 - LEASE_USABLE)))
        except (ConnectionError, ServerRejected) as err:
            log.warning("heartbeat failed: %s", err)
            self._lose(current)
        if current.lost:
            log.warning("starting no new test of group %s: its lease lapsed", current.group_id)
            return False
        return True

    async def _beat(self, current: _Current | None, retry_for: float) -> None:
        """One heartbeat: the leases of `current` (if any) extended, or found lost; cancels applied."""
        claims = [{"group_id": current.group_id, "token": current.token}] if current else []
        sent_at = lease_clock()
        answer = await self.client.call(
            "PUT", f"/agents/{self.agent_id}/heartbeat", {"claims": claims}, retry_for=retry_for
        )
        self.lease_seconds = float(answer.get("lease_seconds", self.lease_seconds))
        if current is not None and current.group_id in answer.get("held", []):
            current.renewed(sent_at)
        if current is not None and current is self._current:
            await self._apply(current, answer)

    def _lose(self, current: _Current) -> None:
        """The server says the claim is no longer ours: stop the running test, drop the group."""
        if not current.lost:
            log.warning("lost the claim on group %s: stopping its test", current.group_id)
        current.lost = True
        if current.run:
            asyncio.get_running_loop().create_task(current.run.stop())

    async def _install(self, claim: dict[str, Any]) -> str | None:
        if self.config.install is None:
            return None
        build = (claim["org_id"], claim["app_version_id"])
        if not self.config.always_install and self._held.get(claim["target"]) == build:
            log.info("%s is installed already on %s: no install", claim["app_version_id"], claim["target"])
            return None
        self._held.pop(claim["target"], None)  # whatever the device held is being replaced
        argv = self.config.install.render(**_fields(claim, claim["jobs"][0]))
        log.info("installing %s: %s", claim["app_version_id"], argv)
        current = self._current
        workdir = None if self.config.appwright is None else str(self.config.appwright.workdir)
        install = Run(argv, self.config.install_timeout, _env(claim, None, self._base_env), cwd=workdir)
        if current is not None:
            current.run = install  # a lost claim or a second signal stops the install too
        result = await install.execute()
        if current is not None:
            current.run = None
        if result.exit_code == 0:
            self._held[claim["target"]] = build
            return None
        reason = result.error or f"install exited {result.exit_code}"
        log.warning("install failed for %s: %s", claim["app_version_id"], reason)
        return f"install failed: {reason}\n{result.output_tail[-2000:]}".strip()

    async def _run_job(
        self, claim: dict[str, Any], job: dict[str, Any], install_error: str | None, reporter: Reporter
    ) -> None:
        """Start the job (reported, not awaited: the start rides on the next progress report), run it and
        queue its result. A start the server refuses (the job was cancelled meanwhile) stops the run."""
        current = self._current
        assert current is not None
        logs.bind(job_id=job["id"])
        accepted = reporter.start(job["id"])
        current.job_id = job["id"]
        if install_error is not None:
            result = RunResult(None, 0, "", error=install_error)
        else:
            assert self.config.run is not None
            argv = self.config.run.render(**_fields(claim, job))
            log.info("running job %s: %s", job["id"], argv)
            timeout = job.get("timeout_seconds") or self.config.test_timeout
            current.run = self.config.runner(argv, timeout, _env(claim, job, self._base_env))
            watch = _CancelWatch(self, current, job["id"], accepted)
            try:
                result = await current.run.execute()
            finally:
                await watch.close()
            current.run = None
        current.job_id = None
        if current.lost:
            log.warning("claim on group %s was lost; the result of job %s is dropped", current.group_id, job["id"])
            return
        if accepted.done() and not accepted.cancelled() and not accepted.result():
            log.info("job %s was not started (cancelled meanwhile); its run is not reported", job["id"])
            return
        body: dict[str, Any] = {
            "exit_code": result.exit_code,
            "duration_ms": result.duration_ms,
            "output_tail": result.output_tail,
            "error": result.error,
        }
        if result.exit_code is None:
            body["outcome"] = "cancelled" if job["id"] in current.cancelled else "infra_error"
        if result.exit_code not in (0, 1) and job["id"] not in current.cancelled:  # the cause, where operators look
            cause = result.error or f"the run exited {result.exit_code}"
            log.warning("job %s (%s): infrastructure error: %s", job["id"], job["test_path"], cause)
        reporter.result(job["id"], body)

    async def _release(self, current: _Current, reason: str) -> None:
        with contextlib.suppress(ServerConflict, ServerRejected, ConnectionError):
            await self.client.call(
                "POST",
                f"/agents/{self.agent_id}/groups/{current.group_id}/release",
                {"token": current.token, "reason": reason},
                retry_for=10,
            )
            log.info("gave group %s back", current.group_id)

    async def _stop_refused(self, current: _Current, job_id: str) -> None:
        """The server refused the start (the job was cancelled before it began): stop the run."""
        if current.run is not None and current.job_id == job_id:
            log.info("job %s was cancelled before it started: stopping it", job_id)
            current.cancelled.add(job_id)
            await current.run.stop()

    async def _watch_for_cancel(self, current: _Current, job_id: str) -> None:
        """Long-poll the job while it runs: a cancel stops the test within moments, not at the next
        heartbeat. The heartbeat still reports cancels, should this request fail."""
        path = f"/agents/{self.agent_id}/jobs/{job_id}/wait"
        while current.run is not None and current.job_id == job_id:
            try:
                answer = await self.client.call("GET", f"{path}?timeout={CLAIM_WAIT_SECONDS}", retry_for=5)
            except (ConnectionError, ServerRejected, ServerConflict):
                await asyncio.sleep(self.lease_seconds / 3)
                continue
            if answer and answer.get("status") == "cancelled" and current.job_id == job_id and current.run:
                log.info("job %s was cancelled: killing its test", job_id)
                current.cancelled.add(job_id)
                await current.run.stop()
                return

    # -- heartbeat -------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._rearm.wait(), timeout=max(0.2, self.lease_seconds / 3))
            except TimeoutError:
                pass
            else:  # the claim's lease is fresh; a beat now would only cost a request per group
                self._rearm.clear()
                continue
            try:
                await self._beat(self._current, retry_for=self.lease_seconds)
            except (ConnectionError, ServerRejected) as err:
                log.warning("heartbeat failed: %s", err)

    async def _apply(self, current: _Current, answer: dict[str, Any]) -> None:
        if current.group_id in answer.get("lost", []):
            log.warning("lost the claim on group %s (lease lapsed): stopping its test", current.group_id)
            current.lost = True
            if current.run:
                await current.run.stop()
        cancelled = set(answer.get("cancelled_job_ids", []))
        if current.job_id is not None and current.job_id in cancelled and current.run:
            log.info("job %s was cancelled: killing its test", current.job_id)
            current.cancelled.add(current.job_id)
            await current.run.stop()


class _CancelWatch:
    """Watches a running job for a cancel, without a task per job: a start the server refuses stops the run at
    once (a callback on the start's future); once the server has the start, the long-poll begins after
    CANCEL_WATCH_DELAY (a timer), so a test over in less costs neither a task nor a request."""

    def __init__(self, agent: Agent, current: _Current, job_id: str, accepted: asyncio.Future[bool]) -> None:
        self._agent, self._current, self._job_id, self._accepted = agent, current, job_id, accepted
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        accepted.add_done_callback(self._started)

    def _started(self, accepted: asyncio.Future[bool]) -> None:
        if accepted.cancelled():
            return
        if accepted.result():
            self._timer = self._loop.call_later(CANCEL_WATCH_DELAY, self._poll)
        else:
            self._task = self._loop.create_task(self._agent._stop_refused(self._current, self._job_id))

    def _poll(self) -> None:
        self._task = self._loop.create_task(self._agent._watch_for_cancel(self._current, self._job_id))

    async def close(self) -> None:
        """The run is over: stop watching."""
        self._accepted.remove_done_callback(self._started)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await cancel_and_wait(self._task)


def _fields(claim: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    return {
        "app_version_id": claim["app_version_id"],
        "target": claim["target"],
        "org_id": claim["org_id"],
        "job_id": job["id"],
        "test_path": job["test_path"],
    }


def _base_env() -> dict[str, str]:
    # The agent's own credentials are not the test's business.
    env = {k: v for k, v in os.environ.items() if k not in ("QGJOB_TOKEN", "QUALGENT_ADMIN_TOKEN")}
    env.setdefault("CI", "true")  # AppWright's HTML reporter waits for a person unless CI is set
    return env


def _env(claim: dict[str, Any], job: dict[str, Any] | None, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else _base_env())
    env.update(
        {
            "QUALGENT_ORG_ID": claim["org_id"],
            "QUALGENT_APP_VERSION_ID": claim["app_version_id"],
            "QUALGENT_TARGET": claim["target"],
            "QUALGENT_GROUP_ID": claim["group_id"],
        }
    )
    if job is not None:
        env.update({"QUALGENT_JOB_ID": job["id"], "QUALGENT_TEST_PATH": job["test_path"]})
    return env
