"""Alembic, driven from code: `qgjob db upgrade|current|check`, server start-up and tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from alembic import command
from qualgent.db.engine import create_sync_engine, normalize_url


def migrations_dir() -> Path:
    """alembic/ at the top of a checkout; packed into the wheel as qualgent/_migrations."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("qualgent's migrations are missing from this installation")


def revision_module(filename: str) -> ModuleType:
    """An earlier migration's module (its file in alembic/versions), for a downgrade that puts back the definitions
    it made: migrations are files, not an importable package."""
    path = migrations_dir() / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"qualgent_migration_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head", sql: bool = False) -> None:
    command.upgrade(alembic_config(url), revision, sql=sql)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/x")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            return _current(conn)
    finally:
        engine.dispose()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(url: str) -> bool:
    return current_revision(url) == head_revision()


def schema_differences(url: str) -> list[str]:
    """What Alembic's autogenerate sees between the database and the models (empty: identical)."""
    from alembic.autogenerate import compare_metadata

    from qualgent.db.models import Base

    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    return [repr(d) for d in diffs]


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
