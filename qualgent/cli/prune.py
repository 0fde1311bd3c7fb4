"""`qgjob prune`: retention by hand (servers also prune hourly). Talks to the database, like `qgjob db`."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import psycopg
import psycopg_pool
import rich_click as click
from sqlalchemy.exc import OperationalError

from qualgent.cli.client import CliError
from qualgent.cli.common import json_option
from qualgent.cli.exit_codes import BAD_INPUT, INFRA_ERROR
from qualgent.cli.output import errors, print_json
from qualgent.cli.server import _database_url, _db_options, _settings
from qualgent.server.db import migrate
from qualgent.server.db.database import Database
from qualgent.server.queue import retention


@click.command()
@_db_options
@click.option(
    "--older-than",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="DAYS",
    help="Prune what finished more than DAYS days ago. [default: QUALGENT_RETENTION_DAYS, 90]",
)
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=retention.BATCH_SIZE,
    show_default=True,
    help="Jobs (or groups, or keys) per transaction.",
)
@json_option
def prune(
    database_url: str | None,
    data_dir: Path | None,
    older_than: float | None,
    dry_run: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Delete finished jobs (completed, failed, cancelled) and their attempts, done groups and idempotency
    keys older than the retention period, oldest first, in batches of one transaction each. Each batch is
    first added to the reporting rollups (reporting.daily_*), so the reporting views still count it.
    Pending and running work is never touched. Safe while servers run; they prune hourly by themselves."""
    days = older_than if older_than is not None else _settings().retention_days
    if days <= 0:
        message = "retention is off (QUALGENT_RETENTION_DAYS=0): nothing pruned; give --older-than DAYS to prune"
        if as_json:
            print_json({"dry_run": dry_run, "older_than_days": None, "skipped": True, "reason": message})
        else:
            errors.print(message)
        return
    url, embedded = _database_url(database_url, data_dir)
    try:
        if not migrate.is_up_to_date(url):
            raise CliError(
                f"the database schema is at revision {migrate.current_revision(url) or 'none'}, "
                f"this qgjob needs {migrate.head_revision()}: run `qgjob db upgrade` first",
                BAD_INPUT,
            )
        report = asyncio.run(_prune(url, dt.timedelta(days=days), dry_run, batch_size))
    except OperationalError as err:  # from the schema check (Alembic's engine)
        raise CliError(f"cannot reach the database: {str(err.orig or err).splitlines()[0]}", INFRA_ERROR) from err
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as err:
        raise CliError(f"cannot reach the database: {str(err).splitlines()[0]}", INFRA_ERROR) from err
    finally:
        if embedded is not None:
            embedded.stop()
    if as_json:
        print_json({"older_than_days": days, **report.as_json()})
        return
    click.echo(_summary(report, days))


async def _prune(url: str, older_than: dt.timedelta, dry_run: bool, batch_size: int) -> retention.PruneReport:
    # Not the server's timeouts: no 30 s statement timeout (a dry run counts the whole history).
    db = Database(url, size=1, application_name="qgjob prune", connect_args={"connect_timeout": 5})
    await db.open(wait=True)
    try:
        return await retention.prune(db, older_than, dry_run=dry_run, batch_size=batch_size)
    finally:
        await db.close()


def _summary(report: retention.PruneReport, days: float) -> str:
    what = (
        f"{report.jobs:,} finished job(s), {report.attempts:,} attempt(s), {report.groups:,} done group(s) "
        f"and {report.submissions:,} idempotency key(s) older than {days:g} day(s) "
        f"(finished before {report.cutoff.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC)"
    )
    if report.dry_run:
        oldest = f"{report.oldest_finished_at:%Y-%m-%d}" if report.oldest_finished_at else "none"
        return f"would prune {what}; oldest finished job: {oldest}. Nothing was deleted (--dry-run)."
    return (
        f"pruned {what} in {report.batches} batch(es), {report.seconds:.1f}s; "
        "the reporting views still count them (reporting.daily_* rollups)"
    )
