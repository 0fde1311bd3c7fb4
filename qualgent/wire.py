"""The wire contract the client and the server share: the rules of the API's fields and the token roles.

Client side (qgjob's client commands, the agent) and server side (qualgent.server.api) both import these, so the CLI
refuses exactly what the API would refuse. This module imports msgspec and the standard library only: no
framework, nothing of the server (tests/unit/test_layers.py checks it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from qualgent.domain.text import NAME_PATTERN, NAME_RULE

# One rule for names and test paths (qualgent.domain.text): no control, line-separator or bidirectional-control
# characters, and no leading '-' (it would read as an option to the program a template hands it to).
PRINTABLE = NAME_PATTERN
TEST_PATH = NAME_PATTERN
MAX_BULK = 10_000

Identifier = Annotated[
    str, Meta(min_length=1, max_length=128, pattern=PRINTABLE, description=f"1-128 characters, {NAME_RULE}")
]
TestPath = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1024,
        pattern=TEST_PATH,
        description=f"a test file path: 1-1024 characters, {NAME_RULE} (it would read as an option)",
    ),
]
AgentName = Annotated[
    str, Meta(min_length=1, max_length=128, pattern=PRINTABLE, description=f"1-128 characters, {NAME_RULE}")
]
IdempotencyKey = Annotated[
    str,
    Meta(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$(?!\n)", description="1-255 printable ASCII characters"),
]
ExitCode = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]  # a PostgreSQL integer
DurationMs = Annotated[int, Meta(ge=0, le=2**53)]
MaxAttempts = Annotated[int, Meta(ge=1, le=20)]


class TokenRole(StrEnum):
    """The roles a token made by the API may have (the admin token comes from the environment)."""

    SUBMITTER = "submitter"
    AGENT = "agent"


def violation(value: Any, kind: Any) -> str | None:
    """Why `value` breaks the rules of a type above, or None. The CLI checks its flags with this, so it
    refuses exactly what the API would refuse."""
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError as err:
        rule = next((arg.description for arg in getattr(kind, "__metadata__", ()) if isinstance(arg, Meta)), None)
        if rule is None:
            return str(err)
        return f"must be {rule}" if "matching regex" in str(err) else f"{err} ({rule})"
    return None
