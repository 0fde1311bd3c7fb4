"""QUALGENT_RETENTION_DAYS: how long finished work is kept (qualgent/server/queue/retention.py)."""

from __future__ import annotations

import pytest

from qualgent.domain import InvalidInput
from qualgent.server.settings import Settings


def test_finished_work_is_kept_90_days_unless_told_otherwise() -> None:
    assert Settings.from_env({}).retention_days == 90
    assert Settings.from_env({"QUALGENT_RETENTION_DAYS": "0"}).retention_days == 0
    assert Settings.from_env({"QUALGENT_RETENTION_DAYS": "30.5"}).retention_days == 30.5


@pytest.mark.parametrize("raw", ["-1", "soon", "inf", "nan"])
def test_a_retention_that_is_not_a_number_of_days_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="QUALGENT_RETENTION_DAYS"):
        Settings.from_env({"QUALGENT_RETENTION_DAYS": raw})
