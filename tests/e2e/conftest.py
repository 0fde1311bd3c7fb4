from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Cli, Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """`qgjob server` on this test's fresh database."""
    running = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_LEASE_SECONDS": "3"}).start()
    yield running
    running.stop()


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server.api_url)
