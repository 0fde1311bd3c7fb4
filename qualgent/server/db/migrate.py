"""Alembic, driven from code: `qgjob db upgrade|current|check`, server start-up and tests.

Versioned migrations (alembic/versions) change tables, types, indexes and data. Functions, triggers and views are
defined once, in qualgent/server/db/schema.sql, and applied by the upgrade that reaches head whenever the file's text
differs from the one the database last got (its SHA-256 is the comment on alembic_version). docs/design.md
("Schema and migrations") has the rules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from alembic import command
from qualgent.server.db.engine import create_sync_engine, normalize_url


def migrations_dir() -> Path:
    """alembic/ at the top of a checkout; packed into the wheel as qualgent/_migrations."""
    package = Path(__file__).resolve().parents[2]  # qualgent/
    for candidate in (package / "_migrations", package.parent / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("qualgent's migrations are missing from this installation")


SCHEMA_SQL = Path(__file__).with_name("schema.sql")

# Revisions of the chain squashed into the 0012 baseline, never released: such a database cannot go on from here.
SQUASHED = frozenset(f"{n:04d}" for n in range(1, 12))
BASELINE = "0012"

# The advisory lock (pg_advisory_xact_lock(bigint)) an upgrade holds for its whole transaction: servers starting at
# once take turns, and the second one finds the schema at head, with schema.sql's checksum, and does nothing.
MIGRATION_LOCK = 0x71676D6967726174  # 'qgmigrat'

# Schemas whose functions, triggers and views are qualgent's: the search path's first (where schema.sql's
# unqualified names go) and `reporting`. An extension's objects are never ours.

# Drops every function, trigger and view of ours. Catalog-driven, so it also runs as printed SQL (`--sql`).
# Plain DROP, not CASCADE, for functions: anything else that came to depend on one (a column default, an index)
# stops the upgrade rather than being dropped with it.
DROP_OBJECTS = """
DO $$
DECLARE
    statement text;
BEGIN
    FOR statement IN
        SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal
          AND c.relnamespace::regnamespace::text = ANY (ARRAY[current_schema()::text, 'reporting'])
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid
                                                    AND d.deptype = 'e')
    LOOP
        EXECUTE statement;
    END LOOP;
    FOR statement IN
        SELECT format('DROP VIEW IF EXISTS %s CASCADE', c.oid::regclass)
        FROM pg_class c
        WHERE c.relkind = 'v' AND c.relnamespace::regnamespace::text = ANY (ARRAY[current_schema()::text, 'reporting'])
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                    AND d.deptype = 'e')
    LOOP
        EXECUTE statement;
    END LOOP;
    FOR statement IN
        SELECT format('DROP %s %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure)
        FROM pg_proc p
        WHERE p.prokind IN ('f', 'p')
          AND p.pronamespace::regnamespace::text = ANY (ARRAY[current_schema()::text, 'reporting'])
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                                    AND d.deptype = 'e')
    LOOP
        EXECUTE statement;
    END LOOP;
END
$$"""


class SchemaTooOld(Exception):
    """The database is at a revision squashed into the baseline: this qgjob has no way from there."""


def schema_text() -> str:
    return SCHEMA_SQL.read_text(encoding="utf-8")


def checksum(text: str) -> str:
    return "schema.sql sha256 " + hashlib.sha256(text.encode()).hexdigest()


def applied_checksum(conn: Connection) -> str | None:
    """The checksum of the schema.sql the database last got (None: none, or dropped for a migration)."""
    return conn.exec_driver_sql("SELECT obj_description(to_regclass('alembic_version'), 'pg_class')").scalar()


def _set_checksum(context: EnvironmentContext, value: str | None) -> None:
    comment = "NULL" if value is None else f"'{value}'"
    context.execute(f"COMMENT ON TABLE alembic_version IS {comment}")


def _print(context: EnvironmentContext, sql: str) -> None:
    """SQL for `--sql`, as it is: context.execute() would double its % signs (SQLAlchemy's escaping for pyformat)."""
    context.get_context().impl.static_output(sql)


def _head(context: EnvironmentContext) -> str | None:
    script = context.get_context().script
    assert script is not None
    return script.get_current_head()


def before_migrations(context: EnvironmentContext) -> bool:
    """In the upgrade's transaction, before any migration: take the migration lock, refuse a squashed revision,
    and when a migration is to run, drop our functions, triggers and views. A migration so sees tables only, the
    same on a new database and an upgraded one: one that needs a function for its data creates its own, in pg_temp
    (gone with the session), rather than call schema.sql's, which describes head, not that point of the chain."""
    head = _head(context)
    if context.is_offline_mode():
        _print(context, DROP_OBJECTS + ";")
        return True
    context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    current = context.get_context().get_current_revision()
    if current in SQUASHED:
        raise SchemaTooOld(
            f"the database schema is at revision {current}, from before the {BASELINE} baseline this qgjob starts "
            f"from (revisions 0001-0011 were never released): bring it to {BASELINE} with qualgent at commit "
            f"5ba93f2 (`qgjob db upgrade`), then run this qgjob's upgrade; or drop the database and start anew"
        )
    destination = context.get_revision_argument()
    if current != head or destination not in ("head", "heads", head):
        context.execute(DROP_OBJECTS)
        if current is not None:
            _set_checksum(context, None)
        return True
    return False


def after_migrations(context: EnvironmentContext, dropped: bool) -> None:
    """In the same transaction, after the migrations: at head, (re)create the functions, triggers and views from
    schema.sql when they were dropped for a migration or the file's text is not the one the database has (dropping
    first those it no longer defines)."""
    text = schema_text()
    if context.is_offline_mode():
        if context.get_revision_argument() in ("head", "heads", _head(context)):
            _print(context, text)
            _set_checksum(context, checksum(text))
        return
    migration = context.get_context()
    if migration.get_current_revision() != _head(context):
        return
    assert migration.connection is not None
    if not dropped:
        if applied_checksum(migration.connection) == checksum(text):
            return
        context.execute(DROP_OBJECTS)
    context.execute(text)
    _set_checksum(context, checksum(text))


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


def schema_sql_applied(url: str) -> bool:
    """The database has this qgjob's schema.sql (its functions, triggers and views)."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            return applied_checksum(conn) == checksum(schema_text())
    finally:
        engine.dispose()


def is_up_to_date(url: str) -> bool:
    return current_revision(url) == head_revision() and schema_sql_applied(url)


def schema_differences(url: str) -> list[str]:
    """What Alembic's autogenerate sees between the database and the models (empty: identical)."""
    from alembic.autogenerate import compare_metadata

    from qualgent.server.db.models import Base

    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    return [repr(d) for d in diffs]


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
