"""Running one command: its own process group (so the whole tree can be killed), output merged and
kept as a bounded tail, a timeout, and a way to stop it from outside (cancel, shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

from qualgent.agent import orphans

TAIL_BYTES = 16_384
KILL_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: int | None  # None: killed by a signal, a timeout or a stop
    duration_ms: int
    output_tail: str
    timed_out: bool = False
    stopped: bool = False
    error: str | None = None


class Run:
    """One process. `stop()` may be called from another task (cancel, shutdown)."""

    def __init__(
        self, argv: list[str], timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.argv = argv
        self.timeout = timeout
        self.env = env
        self.cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._stopped = False

    async def execute(self) -> RunResult:
        started = time.monotonic()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as err:
            return RunResult(None, 0, "", error=f"cannot start {self.argv[0]!r}: {err.strerror or err}")
        orphans.track(self._process.pid)  # its own group (start_new_session): killed if the agent dies first
        try:
            return await self._finish(started)
        finally:
            orphans.forget(self._process.pid)

    async def _finish(self, started: float) -> RunResult:
        assert self._process is not None
        tail: deque[bytes] = deque()
        reader = asyncio.create_task(_collect(self._process, tail))
        timed_out = False
        try:
            await asyncio.wait_for(self._process.wait(), timeout=self.timeout)
        except TimeoutError:
            timed_out = True
            await self._kill_tree()
        # A grandchild may keep the pipe open after the command exited: read what came, then move on.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, timeout=2)
        duration_ms = int((time.monotonic() - started) * 1000)
        output = b"".join(tail)[-TAIL_BYTES:].decode("utf-8", errors="replace")
        code = self._process.returncode
        if timed_out:
            return RunResult(
                None,
                duration_ms,
                output,
                timed_out=True,
                error=f"timed out after {self.timeout:g}s; process tree killed",
            )
        if self._stopped:
            return RunResult(None, duration_ms, output, stopped=True, error="stopped by the agent")
        if code is not None and code < 0:
            return RunResult(None, duration_ms, output, error=f"killed by signal {signal.Signals(-code).name}")
        return RunResult(code, duration_ms, output)

    async def stop(self) -> None:
        self._stopped = True
        await self._kill_tree()

    async def _kill_tree(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after a grace period."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=KILL_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # Children that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


async def _collect(process: asyncio.subprocess.Process, tail: deque[bytes]) -> None:
    assert process.stdout is not None
    kept = 0
    while chunk := await process.stdout.read(4096):
        tail.append(chunk)
        kept += len(chunk)
        while kept - len(tail[0]) >= TAIL_BYTES:
            kept -= len(tail.popleft())


def watch_children_by_pidfd() -> None:
    """Python 3.11 waits for each test process in a thread of its own (ThreadedChildWatcher); a pidfd in the
    event loop costs no thread per test, so the agent's CPU per test process does not grow with a thread's start.
    3.12 does this by default (and deprecates choosing). For `qgjob agent`, and for benchmarks.agent_processes,
    whose spawn baseline must spawn as the agents do."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel without pidfd (before Linux 5.3)
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
