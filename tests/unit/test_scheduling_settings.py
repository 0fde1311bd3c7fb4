"""QUALGENT_AGING_SECONDS and QUALGENT_MIN_CHUNK_SECONDS: the claim's aging bound and smallest split chunk."""

from __future__ import annotations

import pytest

from qualgent.domain import InvalidInput
from qualgent.server.settings import Settings


def test_defaults_and_values() -> None:
    assert (Settings.from_env({}).aging_seconds, Settings.from_env({}).min_chunk_seconds) == (600, 120)
    chosen = Settings.from_env({"QUALGENT_AGING_SECONDS": "90", "QUALGENT_MIN_CHUNK_SECONDS": "30.5"})
    assert (chosen.aging_seconds, chosen.min_chunk_seconds) == (90, 30.5)


@pytest.mark.parametrize("name", ["QUALGENT_AGING_SECONDS", "QUALGENT_MIN_CHUNK_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_bad_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=name):
        Settings.from_env({name: value})
