"""The connection bounds' settings (qualgent/server/api/connections.py) and the open-files limit raised at start."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from qualgent.domain import InvalidInput
from qualgent.server.settings import Settings


def test_defaults_and_overrides() -> None:
    assert (Settings.from_env({}).header_timeout_seconds, Settings.from_env({}).max_connections_per_address) == (
        10.0,
        4096,
    )
    env = {"QUALGENT_HEADER_TIMEOUT_SECONDS": "2.5", "QUALGENT_MAX_CONNECTIONS_PER_ADDRESS": "0"}
    settings = Settings.from_env(env)
    assert (settings.header_timeout_seconds, settings.max_connections_per_address) == (2.5, 0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("QUALGENT_HEADER_TIMEOUT_SECONDS", "0"),
        ("QUALGENT_HEADER_TIMEOUT_SECONDS", "soon"),
        ("QUALGENT_MAX_CONNECTIONS_PER_ADDRESS", "-1"),
        ("QUALGENT_MAX_CONNECTIONS_PER_ADDRESS", "2.5"),
        ("QUALGENT_MAX_CONNECTIONS_PER_ADDRESS", "many"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(InvalidInput, match=name):
        Settings.from_env({name: raw})


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    """In a child process whose soft limit was lowered first (this process keeps its own)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"a hard limit of {hard} leaves nothing to raise")
    code = (
        "import resource\n"
        "from qualgent.server.api.connections import raise_open_files_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(*raise_open_files_limit(), hard)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    now_soft, now_hard, hard = (int(word) for word in done.stdout.split())
    assert now_hard == hard
    assert now_soft > 256
    assert now_soft == hard or hard == resource.RLIM_INFINITY
