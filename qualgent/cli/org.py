"""`qgjob org set-tier|list`: organisations and their tiers (premium > enterprise > standard)."""

from __future__ import annotations

from urllib.parse import quote

import rich_click as click
from rich.markup import escape
from rich.table import Table

from qualgent.cli.common import api_options, checked, client, json_option
from qualgent.cli.output import console, print_json
from qualgent.cli.target import cap_text, max_running_option
from qualgent.domain import Tier
from qualgent.wire import Identifier


@click.group()
def org() -> None:
    """Organisations, their tiers and caps. A tier orders whose groups agents claim first. Admin only."""


@org.command("set-tier")
@click.option("--org-id", required=True, callback=checked(Identifier), help="The organisation (made if new).")
@click.option(
    "--tier",
    type=click.Choice([t.value for t in Tier], case_sensitive=False),
    help="premium > enterprise > standard",
)
@max_running_option
@api_options
@json_option
def set_tier(
    org_id: str, tier: str | None, max_running: int | str | None, api_url: str, token: str | None, as_json: bool
) -> None:
    """Set an org's tier (its waiting groups are re-ranked at once) and/or its cap on groups running at once."""
    body: dict[str, object] = {} if tier is None else {"tier": tier}
    if max_running != "unset":
        body["max_running"] = max_running
    if not body:
        raise click.UsageError("give --tier, --max-running or both")
    with client(api_url, token) as api:
        changed = api.put(f"/orgs/{_path(org_id)}", body)
    if as_json:
        print_json(changed)
    else:
        console.print(f"org {escape(changed['id'])} is {changed['tier']}, {cap_text(changed.get('max_running'))}")


@org.command("list")
@api_options
@json_option
def list_orgs(api_url: str, token: str | None, as_json: bool) -> None:
    """List organisations and their tiers."""
    with client(api_url, token) as api:
        found = api.get("/orgs")
    if as_json:
        print_json(found)
        return
    table = Table(header_style="bold")
    for column in ("org", "tier", "cap", "created", "updated"):
        table.add_column(column, overflow="fold")
    for row in found:
        cap = cap_text(row.get("max_running"))
        table.add_row(escape(row["id"]), row["tier"], cap, row["created_at"], row["updated_at"])
    console.print(table)


def _path(org_id: str) -> str:
    """An org id as one path segment: `/` and other reserved characters escaped."""
    return quote(org_id, safe="")
