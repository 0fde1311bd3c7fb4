"""Statuses, priorities, tiers and the job state machine.

    pending --claim+start--> running --exit 0--> completed
       ^                        |----exit 1--> failed
       |                        |----infra error, attempts left--> pending (later run_after)
       |                        |----infra error, none left------> failed
       +------ cancel from pending or running ------------------> cancelled

The order of members in Priority and Tier is the scheduling order (first is served first);
the database enums are declared in the same order, so SQL can sort and min() on them.
"""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Tier(StrEnum):
    PREMIUM = "premium"
    ENTERPRISE = "enterprise"
    STANDARD = "standard"


class Target(StrEnum):
    EMULATOR = "emulator"
    DEVICE = "device"
    BROWSERSTACK = "browserstack"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class GroupStatus(StrEnum):
    PENDING = "pending"  # waiting for an agent; new jobs of its key join it
    RUNNING = "running"  # claimed: held by one agent under a lease
    DONE = "done"  # every job in it reached a final state or was handed back


class AgentStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"


class Outcome(StrEnum):
    """How one attempt ended."""

    PASSED = "passed"
    TEST_FAILED = "test_failed"
    INFRA_ERROR = "infra_error"
    CANCELLED = "cancelled"


def classify_exit_code(exit_code: int | None) -> Outcome:
    """Exit code of `--run`: 0 passed, 1 test failed; anything else, a signal (None or negative) or a
    timeout is an infrastructure error."""
    if exit_code == 0:
        return Outcome.PASSED
    if exit_code == 1:
        return Outcome.TEST_FAILED
    return Outcome.INFRA_ERROR
