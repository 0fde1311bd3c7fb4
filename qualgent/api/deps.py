"""What controllers are given: the engine and the settings, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.notify import Hub
from qualgent.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    engine: AsyncEngine
    settings: Settings
    hub: Hub


ServicesDep = NamedDependency[Services]
"""How a handler asks for them: `services: ServicesDep`."""


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services
