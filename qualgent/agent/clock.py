"""The agent's clock for leases: it must keep counting while the agent is frozen (SIGSTOP, a stalled VM) and while
the machine sleeps, or an agent that wakes up late would believe its lease still runs."""

from __future__ import annotations

import time


def lease_clock() -> float:
    """Seconds on CLOCK_BOOTTIME (CLOCK_MONOTONIC, which stops during a suspend, where there is none)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()
