"""`qgjob server` and `qgjob db`: the processes that own a database."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import rich_click as click

from qualgent.cli.client import CliError
from qualgent.cli.exit_codes import BAD_INPUT, INFRA_ERROR
from qualgent.domain import InvalidInput
from qualgent.logs import FORMATS, configure_logging
from qualgent.server.db import migrate
from qualgent.server.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from qualgent.server.settings import Settings

log = logging.getLogger("qualgent.server")
FC = TypeVar("FC", bound=Callable[..., Any])


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env().with_overrides(**overrides)
    except InvalidInput as err:
        raise CliError(err.message, BAD_INPUT) from err


@click.command()
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1; env QUALGENT_HOST]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[default: 3000; env QUALGENT_PORT]")
@click.option(
    "--database-url", default=None, help="PostgreSQL URL. [env QUALGENT_DATABASE_URL; unset: an embedded PostgreSQL]"
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the embedded PostgreSQL lives. [env QUALGENT_DATA_DIR]",
)
@click.option(
    "--migrate",
    "migrate_schema",
    is_flag=True,
    default=None,
    help="Upgrade an out-of-date external database schema at start-up instead of refusing to start.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="Serve a non-loopback --host without QUALGENT_ADMIN_TOKEN, i.e. with no authentication at all.",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default=None,
    help="Log lines as text or JSON. [env QUALGENT_LOG_FORMAT]",
)
def server(
    host: str | None,
    port: int | None,
    database_url: str | None,
    data_dir: Path | None,
    migrate_schema: bool | None,
    log_level: str | None,
    log_format: str | None,
    insecure: bool | None,
) -> None:
    """Run the API server. With no database URL it starts an embedded PostgreSQL 18 in the data dir,
    migrates it, and stops it on exit (SIGTERM or Ctrl-C)."""
    from qualgent.server.api import auth, create_app, serving
    from qualgent.server.api.connections import raise_open_files_limit

    settings = _settings(
        host=host,
        port=port,
        database_url=database_url,
        data_dir=data_dir,
        migrate=migrate_schema,
        log_level=log_level,
        log_format=log_format,
        insecure=insecure,
    )
    configure_logging(settings.log_level, "json" if settings.log_format == "json" else "text")
    _tune_gc()
    if refusal := auth.bind_refusal(settings.host, settings):
        raise CliError(refusal, BAD_INPUT)
    for level, notice in auth.startup_notices(settings):
        log.log(level, "%s", notice)
    try:
        sockets = serving.bind(settings.host, settings.port)
    except OSError as err:
        raise _bind_refusal(settings.host, settings.port, err) from err
    embedded: EmbeddedPostgres | None = None
    try:
        if settings.database_url is None:
            embedded = EmbeddedPostgres(settings.data_dir)
            try:
                url = embedded.start()
            except EmbeddedPostgresError as err:
                raise CliError(str(err), INFRA_ERROR) from err
            _upgrade(url)
            where = f"embedded PostgreSQL in {settings.data_dir}"
        else:
            url = settings.database_url
            _check_schema(url, settings.migrate)
            where = "external PostgreSQL"
        settings = settings.with_overrides(database_url=url)
        log.info("qgjob server on http://%s:%d/api (database: %s)", settings.host, settings.port, where)
        app = create_app(settings)
        soft, _hard = raise_open_files_limit()
        log.info(
            "open files: %d; a request head is cut after %g s; connections per client address: %s",
            soft,
            settings.header_timeout_seconds,
            settings.max_connections_per_address or "no bound",
        )
        with _stop_on_signals():
            uvicorn_config = serving.config(app, settings.host, settings.port, settings.log_level, settings)
            serving.Server(uvicorn_config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        if embedded is not None:
            embedded.stop()


def _bind_refusal(host: str, port: int, err: OSError) -> CliError:
    """In use: the machine's state (exit 3). A port or an address this process may not have: the input (exit 2)."""
    if err.errno == errno.EADDRINUSE:
        hint, code = "another qgjob server? choose another --port or QUALGENT_PORT", INFRA_ERROR
    elif err.errno == errno.EACCES:
        hint, code = "ports below 1024 need privileges: choose another --port or QUALGENT_PORT", BAD_INPUT
    else:
        hint, code = "--host or QUALGENT_HOST must be an address of this machine", BAD_INPUT
    return CliError(f"{(err.strerror or str(err)).lower()}: cannot serve on {host}:{port} ({hint})", code)


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived: shut down cleanly (uvicorn has drained by then)."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler that was there before
    it. Ours turns it into a clean exit, so the embedded PostgreSQL is stopped instead of the process
    dying by the signal and leaving the postmaster behind."""

    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except _Stopped as stopped:
        log.info("stopped by %s", stopped)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_schema(url: str, allow_migrate: bool) -> None:
    try:
        current, head = migrate.current_revision(url), migrate.head_revision()
        applied = current == head and migrate.schema_sql_applied(url)
    except Exception as err:
        raise CliError(f"cannot connect to the database: {str(err).splitlines()[0]}", INFRA_ERROR) from err
    if applied:
        return
    if allow_migrate:
        log.info("upgrading the database schema from %s to %s", current, head)
        _upgrade(url)
        return
    needs = f"revision {head}" if current != head else "this version's functions (qualgent/server/db/schema.sql)"
    raise CliError(
        f"the database schema is at revision {current or 'none'}, this qgjob needs {needs}: "
        "run `qgjob db upgrade` (or start the server with --migrate)",
        BAD_INPUT,
    )


def _upgrade(url: str, sql: bool = False) -> None:
    try:
        migrate.upgrade(url, sql=sql)
    except migrate.SchemaTooOld as err:
        raise CliError(str(err), BAD_INPUT) from err


def _database_url(database_url: str | None, data_dir: Path | None) -> tuple[str, EmbeddedPostgres | None]:
    settings = _settings(database_url=database_url, data_dir=data_dir)
    if settings.database_url is not None:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir)
    return embedded.start(), embedded


def _db_options(func: FC) -> FC:
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="The embedded PostgreSQL's data dir. [env QUALGENT_DATA_DIR]",
    )(func)
    return click.option("--database-url", default=None, help="[env QUALGENT_DATABASE_URL; unset: embedded]")(func)


@click.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command()
@_db_options
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
def upgrade(database_url: str | None, data_dir: Path | None, sql: bool) -> None:
    """Upgrade the schema to this version of qgjob."""
    url, embedded = _database_url(database_url, data_dir)
    try:
        before = None if sql else migrate.current_revision(url)
        _upgrade(url, sql=sql)
        if not sql:
            click.echo(f"schema upgraded: {before or 'empty'} -> {migrate.current_revision(url)}")
    finally:
        if embedded is not None:
            embedded.stop()


@db.command()
@_db_options
def current(database_url: str | None, data_dir: Path | None) -> None:
    """Print the schema revision of the database and the one this qgjob needs."""
    url, embedded = _database_url(database_url, data_dir)
    try:
        click.echo(f"database: {migrate.current_revision(url) or 'empty'}")
        click.echo(f"qgjob needs: {migrate.head_revision()}")
    finally:
        if embedded is not None:
            embedded.stop()


@db.command()
@_db_options
def check(database_url: str | None, data_dir: Path | None) -> None:
    """Exit 0 when the schema is up to date and matches the models exactly; 1 otherwise."""
    url, embedded = _database_url(database_url, data_dir)
    try:
        current_rev, head = migrate.current_revision(url), migrate.head_revision()
        if current_rev != head:
            click.echo(f"out of date: database at {current_rev or 'empty'}, qgjob needs {head}")
            sys.exit(1)
        if not migrate.schema_sql_applied(url):
            click.echo(f"out of date: the database's functions are not this qgjob's schema.sql ({head})")
            sys.exit(1)
        differences = migrate.schema_differences(url)
        if differences:
            click.echo("the schema differs from the models:")
            for difference in differences:
                click.echo(f"  {difference}")
            sys.exit(1)
        click.echo(f"schema up to date ({head})")
    finally:
        if embedded is not None:
            embedded.stop()


def _tune_gc() -> None:
    """A bulk submit makes tens of thousands of short-lived containers; with the default threshold (700) the
    cycle collector runs every few hundred of them and walks the whole young generation each time. Modules and
    app state are frozen out of its sight, and it runs a hundred times less often: memory is bounded by the
    request, cycles are rare here."""
    gc.freeze()
    gc.set_threshold(70_000, 20, 20)
