from __future__ import annotations

from pathlib import Path

import pytest

from qualgent.domain import InvalidInput
from qualgent.server.settings import Settings


def test_settings_come_from_the_environment_and_flags_override() -> None:
    settings = Settings.from_env({"QUALGENT_DATABASE_URL": "postgresql://db/x", "QUALGENT_LEASE_SECONDS": "12",
                                  "QUALGENT_DATA_DIR": "/srv/qg", "QUALGENT_PORT": "4000"})  # fmt: skip
    assert settings.database_url == "postgresql://db/x"
    assert settings.lease_seconds == 12
    assert settings.data_dir == Path("/srv/qg")
    assert settings.with_overrides(port=5000, host=None).port == 5000
    assert settings.with_overrides(host=None).host == "127.0.0.1"


def test_an_empty_database_url_means_the_embedded_database() -> None:
    assert Settings.from_env({"QUALGENT_DATABASE_URL": ""}).database_url is None


@pytest.mark.parametrize("value", ["zero", "0", "-3"])
def test_a_bad_lease_is_refused_by_name(value: str) -> None:
    with pytest.raises(InvalidInput, match="QUALGENT_LEASE_SECONDS"):
        Settings.from_env({"QUALGENT_LEASE_SECONDS": value})
