"""A killed agent's test process trees die with it.

Each test runs in a process group of its own (the executor kills the group on timeout, cancel or stop). But an
agent killed with SIGKILL, or by the OOM killer, runs no cleanup: its tests would keep running, holding the
device, an Appium session, a BrowserStack slot. So `qgjob agent` starts one small watchdog process next to it,
holding the read end of a pipe. The agent writes `+PGID` when a test's process group starts and `-PGID` when it
is gone; when the pipe reaches end-of-file (the agent exited, however it died: the kernel closes its end) the
watchdog kills every process group still listed, then exits. One process per agent, not per test: nothing is
added to a test's start but a write to a pipe (a `preexec_fn` setting PR_SET_PDEATHSIG would force fork instead
of vfork for every test, and would reach the test's direct child only, not what it spawned).

The watchdog ignores SIGINT, SIGTERM and SIGHUP and sits in a session of its own, so a Ctrl-C or a signal to the
agent's process group leaves it to do its work after the agent is gone. A process that left its test's group on
purpose (setsid, a daemonizing Appium) escapes it, as it escapes the executor's own kill.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

_WATCHDOG = r"""
import os, signal
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(number, signal.SIG_IGN)
groups, pending = set(), b""
while True:
    try:
        chunk = os.read(0, 4096)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class Watchdog:
    """The agent's side of the pipe. `track(pgid)` / `forget(pgid)` around each test's process group."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self._process.stdin is not None
        self._pipe = self._process.stdin.fileno()

    @property
    def pid(self) -> int:
        return self._process.pid

    def track(self, pgid: int) -> None:
        self._write(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._write(f"-{pgid}\n")

    def _write(self, line: str) -> None:
        with contextlib.suppress(OSError):  # a watchdog gone (killed by hand) must not stop the tests
            os.write(self._pipe, line.encode())

    def close(self) -> None:
        """A clean exit: the watchdog sees end-of-file, kills what is still listed (nothing, normally), exits."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)


_current: Watchdog | None = None


def start() -> Watchdog:
    """Start this process's watchdog (once); the executor reports every test's process group to it."""
    global _current
    if _current is None:
        _current = Watchdog()
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


def track(pgid: int) -> None:
    if _current is not None:
        _current.track(pgid)


def forget(pgid: int) -> None:
    if _current is not None:
        _current.forget(pgid)
