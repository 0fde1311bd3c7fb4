"""What controllers are given: the queue (its database, one psycopg pool, and the settings), the LISTEN hub and
the token cache, built once in create_app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from litestar.datastructures import State
from litestar.di import NamedDependency

from qualgent.server.db.database import Database
from qualgent.server.notify import Hub
from qualgent.server.queue.core import Queue
from qualgent.server.queue.tokens import TokenCache
from qualgent.server.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    queue: Queue  # the database (one pool) and the settings every operation goes by
    hub: Hub
    tokens: TokenCache  # live tokens seen, forgotten whenever api_tokens changes (the hub counts the changes)
    # Agents' targets by id, for claims: set at registration and never changed, so a claim need not read
    # the agent first (the claim itself still checks it exists and is not offline).
    agent_targets: dict[uuid.UUID, list[str]] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.queue.db

    @property
    def settings(self) -> Settings:
        return self.queue.settings


ServicesDep = NamedDependency[Services]
"""How a handler asks for them: `services: ServicesDep`."""


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services
