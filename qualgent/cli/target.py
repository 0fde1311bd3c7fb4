"""`qgjob target set|list`: caps on the groups running at once per target (a device farm's sessions)."""

from __future__ import annotations

from typing import Any

import rich_click as click
from rich.table import Table

from qualgent.cli.common import api_options, client, json_option
from qualgent.cli.output import console, print_json
from qualgent.domain import Target


def max_running_value(_: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """`--max-running`: a count of groups (0 pauses), or `none` for no cap. Not given: the literal "unset"."""
    if value is None:
        return "unset"
    if value.strip().lower() in ("none", "null", "unlimited"):
        return None
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a whole number or 'none'", param=param) from None
    if not 0 <= count <= 1_000_000:
        raise click.BadParameter(f"{count} is not between 0 and 1000000", param=param)
    return count


def max_running_option(func: Any) -> Any:
    return click.option(
        "--max-running",
        callback=max_running_value,
        metavar="N|none",
        help="At most N groups running at once (0 pauses; `none` removes the cap).",
    )(func)


@click.group()
def target() -> None:
    """Targets and their caps on groups running at once. Admin only."""


@target.command("set")
@click.option("--target", "name", type=click.Choice([t.value for t in Target]), required=True)
@click.option(
    "--max-running",
    required=True,
    callback=max_running_value,
    metavar="N|none",
    help="At most N groups running at once (0 pauses; `none` removes the cap).",
)
@api_options
@json_option
def set_cap(name: str, max_running: int | None, api_url: str, token: str | None, as_json: bool) -> None:
    """Cap the groups running at once on a target: work beyond it waits in qualgent's queue, in its order."""
    with client(api_url, token) as api:
        changed = api.put(f"/targets/{name}", {"max_running": max_running})
    if as_json:
        print_json(changed)
    else:
        console.print(f"target {changed['target']}: {cap_text(changed['max_running'])}")


@target.command("list")
@api_options
@json_option
def list_targets(api_url: str, token: str | None, as_json: bool) -> None:
    """List targets with their caps, running and pending groups, and online agents."""
    with client(api_url, token) as api:
        found = api.get("/targets")
    if as_json:
        print_json(found)
        return
    table = Table(header_style="bold")
    for column in ("target", "cap", "running", "pending", "agents online"):
        table.add_column(column)
    for row in found:
        table.add_row(
            row["target"],
            cap_text(row["max_running"]),
            str(row["running"]),
            str(row["pending"]),
            str(row["agents_online"]),
        )
    console.print(table)


def cap_text(max_running: int | None) -> str:
    """A capacity cap as people read it, for targets and orgs alike."""
    return "no cap" if max_running is None else f"at most {max_running} running"
