"""What controllers are given: the engine and the settings, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    engine: AsyncEngine
    settings: Settings


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services
