"""Errors of qualgent. One root; each default message is its docstring.

QualgentError
├── InvalidInput   the request cannot be carried out as given       (HTTP 400/422, CLI exit 2)
├── NotFound       no such job, agent, group or org                 (HTTP 404)
└── Conflict       the state does not allow it                      (HTTP 409)
    └── StaleClaim the claim token is no longer the group's lease   (HTTP 409)
"""

from __future__ import annotations

from typing import Any


class QualgentError(Exception):
    """Something went wrong in qualgent."""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class InvalidInput(QualgentError):
    """The input is not valid."""


class NotFound(QualgentError):
    """No such object."""


class Conflict(QualgentError):
    """The object's state does not allow this."""


class StaleClaim(Conflict):
    """This claim is no longer held: the group's lease was lost or handed to another agent."""
