"""The queue as the server runs it: its database and the settings its operations go by, passed as one object
instead of an engine, a pool and a handful of numbers to every operation."""

from __future__ import annotations

from dataclasses import dataclass

from qualgent.server.db.database import Database
from qualgent.server.settings import Settings


@dataclass(frozen=True, slots=True)
class Queue:
    db: Database
    settings: Settings

    @property
    def lease_seconds(self) -> float:
        return self.settings.lease_seconds
