"""`qgjob report`: the reporting views (per-org success rates, flaky tests, app versions) as tables or JSON."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import rich_click as click
from rich.table import Table

from qualgent.cli.common import api_options, checked, client, json_option
from qualgent.cli.output import console, print_json
from qualgent.wire import Identifier

VIEWS = ("org-success-rates", "flaky-tests", "app-versions")
_SPAN = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str, now: dt.datetime) -> dt.datetime | None:
    """`7d`, `24h`, `30m`, `2w` ago; an ISO date or time (UTC unless it says otherwise); `all`: no bound."""
    if value == "all":
        return None
    if span := _SPAN.match(value):
        return now - dt.timedelta(**{_UNITS[span[2]]: int(span[1])})
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a span like 7d, 24h, 30m, 2w, an ISO date or time, or 'all'") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value, dt.datetime.now(dt.UTC))
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None


@click.command()
@click.argument("views", nargs=-1, type=click.Choice(VIEWS))
@click.option("--org-id", default=None, callback=checked(Identifier), help="Only this organisation.")
@click.option(
    "--since",
    callback=_moment,
    default="7d",
    show_default=True,
    help="Jobs finished since: a span back from now (30m, 24h, 7d, 2w), an ISO date or time, or 'all'.",
)
@click.option("--until", callback=_moment, default=None, help="Jobs finished before this (same forms). [default: now]")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Rows per view.")
@json_option
@api_options
def report(
    views: tuple[str, ...],
    org_id: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    as_json: bool,
    api_url: str,
    token: str | None,
) -> None:
    """Per-org success rates, flaky tests and app versions, from the `reporting` views.

    Name the views to print (default: all three). --json prints one object with the window and each
    view's rows, keyed by view name with underscores (org_success_rates, flaky_tests, app_versions).
    The same views are in PostgreSQL for SQL: SELECT * FROM reporting.org_success_rates.
    """
    chosen = views or VIEWS
    params = {
        "org_id": org_id,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
    }
    with client(api_url, token) as api:
        rows = {view: api.get(f"/reports/{view}", **params)["rows"] for view in chosen}
    if as_json:
        window = {"org_id": org_id, "since": params["since"], "until": params["until"]}
        print_json({"window": window, **{view.replace("-", "_"): rows[view] for view in chosen}})
        return
    console.print(f"[bold]{_describe_window(org_id, since, until)}[/bold]")
    for view in chosen:
        console.print(_TABLES[view](rows[view]))


def _describe_window(org_id: str | None, since: dt.datetime | None, until: dt.datetime | None) -> str:
    who = f"org {org_id}" if org_id else "all orgs"
    start = f"since {since:%Y-%m-%d %H:%M} UTC" if since else "since the beginning"
    end = f" until {until:%Y-%m-%d %H:%M} UTC" if until else ""
    return f"Jobs finished {start}{end}, {who}"


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    if not rows:
        table.caption = "nothing finished in this window"
    return table


def org_table(rows: list[dict[str, Any]]) -> Table:
    columns = ["org", "tier", "finished", "passed", "failed", "cancelled", "success", "median run", "median wait"]
    return _table(
        "Success rates by org",
        [*columns, "p95 wait"],
        [
            [
                r["org_id"],
                r["tier"],
                str(r["finished"]),
                str(r["completed"]),
                str(r["failed"]),
                str(r["cancelled"]),
                percent(r["success_rate"]),
                seconds(r["median_duration_seconds"]),
                seconds(r["median_queue_wait_seconds"]),
                seconds(r["p95_queue_wait_seconds"]),
            ]
            for r in rows
        ],
    )


def flaky_table(rows: list[dict[str, Any]]) -> Table:
    return _table(
        "Tests that failed, most flaky first",
        ["org", "test", "runs", "failures", "passed after failing", "flake rate", "failure rate", "last failure"],
        [
            [
                r["org_id"],
                r["test_path"],
                str(r["runs"]),
                str(r["failures"]),
                str(r["passes_after_failure"]),
                percent(r["flake_rate"]),
                percent(r["failure_rate"]),
                _when(r["last_failure_at"]),
            ]
            for r in rows
        ],
    )


def app_version_table(rows: list[dict[str, Any]]) -> Table:
    return _table(
        "App versions, latest first",
        [
            "org",
            "app version",
            "tests",
            "finished",
            "passed",
            "failed",
            "pass rate",
            "installs",
            "install",
            "tests run",
        ],
        [
            [
                r["org_id"],
                r["app_version_id"],
                str(r["tests"]),
                str(r["finished"]),
                str(r["passed"]),
                str(r["failed"]),
                percent(r["pass_rate"]),
                str(r["installs"]),
                seconds(r["install_seconds"]),
                seconds(r["test_seconds"]),
            ]
            for r in rows
        ],
    )


_TABLES = {"org-success-rates": org_table, "flaky-tests": flaky_table, "app-versions": app_version_table}


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def seconds(value: float | None) -> str:
    """1.2s, 3m05s, 2h10m: short enough for a column."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"
