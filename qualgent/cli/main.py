"""qgjob: the one command of qualgent."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click as plain_click
import rich_click as click

from qualgent import __version__
from qualgent.cli.exit_codes import HELP

# Each command's module is imported only when that command runs (or its --help is shown), so a client command
# loads the client alone: `qgjob submit` never imports the server (Litestar, SQLAlchemy, psycopg, ...), and the
# server's commands import it only when run. Order: as `qgjob --help` lists them. Name -> "module:attribute".
COMMANDS: dict[str, str] = {
    "submit": "qualgent.cli.jobs:submit",
    "wait": "qualgent.cli.wait:wait",
    "status": "qualgent.cli.jobs:status",
    "list": "qualgent.cli.jobs:list_jobs",
    "cancel": "qualgent.cli.jobs:cancel",
    "retry": "qualgent.cli.jobs:retry",
    "report": "qualgent.cli.report:report",
    "top": "qualgent.cli.top:top",
    "server": "qualgent.cli.server:server",
    "agent": "qualgent.cli.agent:agent",
    "db": "qualgent.cli.server:db",
    "token": "qualgent.cli.token:token",
    "org": "qualgent.cli.org:org",
    "target": "qualgent.cli.target:target",
    "prune": "qualgent.cli.prune:prune",
    "bench": "qualgent.cli.bench:bench",
}
# What runs on CI runners and device hosts: these and everything they import stay off the server's modules
# (tests/static/test_layers.py). The rest (server, db, prune, bench) are the server's own commands.
CLIENT_COMMANDS = (
    "submit",
    "wait",
    "status",
    "list",
    "cancel",
    "retry",
    "report",
    "top",
    "agent",
    "token",
    "org",
    "target",
)

click.rich_click.TEXT_MARKUP = "ansi"  # plain help text, as USE_MARKDOWN = False was (now deprecated)
HELP_WIDTH = 100  # --help read in a pipe or a log: lines a person can read, not 200 columns
if not sys.stderr.isatty() and "COLUMNS" not in os.environ:
    # Errors in CI logs and pipes: one long line that grep finds, not a message folded into 80 columns.
    wide = not {"--help", "-h"} & set(sys.argv[1:])
    click.rich_click.WIDTH = click.rich_click.MAX_WIDTH = 200 if wide else HELP_WIDTH


class _Qgjob(click.RichGroup):
    """Commands are loaded lazily from COMMANDS (see there).

    Under --json, an error is a JSON object on stdout too (`{"error": ..., "exit_code": ...}`), so a script
    that parses stdout always gets JSON; the message still goes to stderr as usual."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or extra.get("standalone_mode") is False:
            return super().main(argv, *rest, **extra)
        extra["standalone_mode"] = False
        try:
            code = super().main(argv, *rest, **extra)
        except plain_click.ClickException as err:
            print(json.dumps({"error": err.format_message(), "exit_code": err.exit_code}))
            sys.stdout.flush()
            _show(self, err)
            sys.exit(err.exit_code)
        except plain_click.Abort:
            print(json.dumps({"error": "aborted", "exit_code": 1}))
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: plain_click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: plain_click.Context, cmd_name: str) -> plain_click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = COMMANDS[cmd_name].partition(":")
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        except ModuleNotFoundError as err:
            if cmd_name in CLIENT_COMMANDS or (err.name or "").startswith("qualgent"):
                raise
            command = _not_installed(cmd_name, err.name or "?")  # a client-only install (the GitHub Action's)
        assert isinstance(command, plain_click.Command), COMMANDS[cmd_name]
        self.add_command(command, cmd_name)
        return command


def _not_installed(name: str, missing: str) -> plain_click.Command:
    """A server command where only the client is installed: listed, and run it says what to install."""

    def refuse() -> None:
        message = f"`qgjob {name}` needs the full install (module {missing!r} is missing): pip install qualgent"
        raise plain_click.UsageError(message)

    anything = {"ignore_unknown_options": True, "allow_extra_args": True}  # its own flags: the same answer
    return click.Command(
        name, callback=refuse, context_settings=anything, help="Needs the full install (pip install qualgent)."
    )


def _show(command: click.RichGroup, err: plain_click.ClickException) -> None:
    """The error on stderr, formatted as rich-click formats it without --json."""
    try:
        formatter = command._error_formatter()
        formatter.write_error(err)
        print(formatter.getvalue(), file=sys.stderr, end="")
    except Exception:  # an older or newer rich-click: click's plain rendering
        err.show()


@click.group(cls=_Qgjob, epilog=HELP)
@click.version_option(__version__, prog_name="qgjob")
def cli() -> None:
    """qualgent: queue, group and dispatch mobile end-to-end tests to test agents.

    Jobs of one app build are grouped so an agent installs the build once and runs its tests
    back to back. PostgreSQL is the only store; `qgjob server` starts an embedded one by default.
    """


def main() -> None:
    cli()
