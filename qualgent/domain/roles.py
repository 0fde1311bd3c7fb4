"""Who may call the API: the roles of a credential (docs/security.md)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # QUALGENT_ADMIN_TOKEN: everything
    SUBMITTER = "submitter"  # one org: submit, read, list, wait, watch events and cancel its own jobs
    AGENT = "agent"  # agent work only: register, heartbeat, claim, start, report, release


TOKEN_ROLES = (Role.SUBMITTER, Role.AGENT)
"""The roles a token made by `POST /api/tokens` may have; the admin token comes from the environment."""
