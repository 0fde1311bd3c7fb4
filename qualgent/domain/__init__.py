"""Plain types of the domain: no I/O, no framework."""

from qualgent.domain.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QualgentError,
    StaleClaim,
)
from qualgent.domain.types import (
    FINAL_STATUSES,
    AgentStatus,
    JobStatus,
    Outcome,
    Priority,
    Target,
    Tier,
    classify_exit_code,
)

__all__ = [
    "FINAL_STATUSES",
    "AgentStatus",
    "Conflict",
    "InvalidInput",
    "JobStatus",
    "NotFound",
    "Outcome",
    "Priority",
    "QualgentError",
    "StaleClaim",
    "Target",
    "Tier",
    "classify_exit_code",
]
