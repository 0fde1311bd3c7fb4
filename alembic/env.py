"""Alembic environment: the URL comes from qualgent (qgjob db, the server, tests), or from
QUALGENT_DATABASE_URL when the alembic CLI is used directly."""

from __future__ import annotations

import os

from alembic import context
from qualgent.server.db import migrate
from qualgent.server.db.engine import create_sync_engine, normalize_url
from qualgent.server.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("QUALGENT_DATABASE_URL")
    if not url:
        raise SystemExit("set QUALGENT_DATABASE_URL, or use `qgjob db upgrade`")
    return normalize_url(url)


def _run() -> None:
    """The migrations, between dropping and re-creating the functions, triggers and views (qualgent.server.db.migrate),
    all in one transaction."""
    with context.begin_transaction():
        dropped = migrate.before_migrations(context)
        context.run_migrations()
        migrate.after_migrations(context, dropped)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    _run()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        _run()
        return
    engine = create_sync_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            _run()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
