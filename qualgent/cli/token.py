"""`qgjob token create|list|revoke`: API tokens, for the admin (QGJOB_TOKEN = the admin token)."""

from __future__ import annotations

import uuid
from typing import Any

import rich_click as click
from rich.markup import escape
from rich.table import Table

from qualgent.cli.common import api_options, checked, client, json_option
from qualgent.cli.output import console, errors, print_json
from qualgent.wire import Identifier, TokenRole

_ROLES = click.Choice([role.value for role in TokenRole])


@click.group()
def token() -> None:
    """API tokens: a submitter token acts for one org (submit, read, list, wait, cancel its jobs);
    an agent token may do agent work only. Needs the admin token (QUALGENT_ADMIN_TOKEN)."""


@token.command()
@click.option("--role", type=_ROLES, required=True, help="submitter (one org) or agent.")
@click.option("--org-id", callback=checked(Identifier), default=None, help="The org a submitter token acts for.")
@click.option("--name", callback=checked(Identifier), default=None, help="What the token is for, e.g. ci-android.")
@api_options
@json_option
def create(role: str, org_id: str | None, name: str | None, api_url: str, token: str | None, as_json: bool) -> None:
    """Make a token. The secret is printed once, alone on stdout; it cannot be shown again."""
    if role == TokenRole.SUBMITTER and org_id is None:
        raise click.BadParameter("a submitter token acts for one org: give --org-id", param_hint="--org-id")
    if role == TokenRole.AGENT and org_id is not None:
        raise click.BadParameter("an agent token serves every org: leave --org-id out", param_hint="--org-id")
    body = {"role": role, "org_id": org_id, "name": name}
    with client(api_url, token) as api:
        made = api.post("/tokens", {k: v for k, v in body.items() if v is not None})
    if not made.get("enforced", True):
        errors.print(
            "[bold yellow]warning:[/bold yellow] this server has no admin token (QUALGENT_ADMIN_TOKEN is unset), so it "
            "checks no token: this one restricts nothing, and anyone who can reach the server may do anything. "
            "Start the server with QUALGENT_ADMIN_TOKEN set for tokens to take effect.",
            soft_wrap=True,
        )
    if as_json:
        print_json(made)
        return
    scope = f" for org {made['org_id']}" if made.get("org_id") else ""
    errors.print(f"{escape(made['role'])} token {made['id']}{escape(scope)}: store it now, it is not shown again")
    click.echo(made["token"])


@token.command("list")
@click.option("--role", type=_ROLES, default=None)
@click.option("--org-id", callback=checked(Identifier), default=None)
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@api_options
@json_option
def list_tokens(
    role: str | None, org_id: str | None, include_revoked: bool, api_url: str, token: str | None, as_json: bool
) -> None:
    """List tokens (their ids and first characters; never the secrets)."""
    with client(api_url, token) as api:
        found = api.get("/tokens", role=role, org_id=org_id, include_revoked=include_revoked or None)
    if as_json:
        print_json(found)
    else:
        console.print(_table(found))


@token.command()
@click.option("--token-id", required=True, help="The id of the token to revoke (from `qgjob token list`).")
@api_options
@json_option
def revoke(token_id: str, api_url: str, token: str | None, as_json: bool) -> None:
    """Revoke a token: it is refused from the next request on."""
    try:
        token_uuid = uuid.UUID(token_id)
    except ValueError:
        raise click.BadParameter(f"{token_id!r} is not a token id (a UUID)", param_hint="--token-id") from None
    with client(api_url, token) as api:
        revoked = api.delete(f"/tokens/{token_uuid}")
    if as_json:
        print_json(revoked)
    else:
        console.print(f"token {revoked['id']} ({escape(revoked['prefix'])}...) revoked at {revoked['revoked_at']}")


def _table(found: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for column in ("token id", "role", "org", "name", "starts with", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for row in found:
        table.add_row(
            row["id"],
            row["role"],
            escape(row.get("org_id") or "-"),
            escape(row.get("name") or "-"),
            escape(row["prefix"]) + "...",
            row["created_at"],
            row.get("revoked_at") or "-",
        )
    return table
