"""qgjob: the one command of qualgent."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click as plain_click
import rich_click as click

from qualgent import __version__
from qualgent.cli.agent import agent
from qualgent.cli.bench import bench
from qualgent.cli.exit_codes import HELP
from qualgent.cli.jobs import cancel, list_jobs, retry, status, submit
from qualgent.cli.org import org
from qualgent.cli.prune import prune
from qualgent.cli.report import report
from qualgent.cli.server import db, server
from qualgent.cli.target import target
from qualgent.cli.token import token
from qualgent.cli.top import top
from qualgent.cli.wait import wait

click.rich_click.USE_MARKDOWN = False
HELP_WIDTH = 100  # --help read in a pipe or a log: lines a person can read, not 200 columns
if not sys.stderr.isatty() and "COLUMNS" not in os.environ:
    # Errors in CI logs and pipes: one long line that grep finds, not a message folded into 80 columns.
    wide = not {"--help", "-h"} & set(sys.argv[1:])
    click.rich_click.WIDTH = click.rich_click.MAX_WIDTH = 200 if wide else HELP_WIDTH


class _Qgjob(click.RichGroup):
    """Under --json, an error is a JSON object on stdout too (`{"error": ..., "exit_code": ...}`), so a script
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


for command in (
    submit,
    wait,
    status,
    list_jobs,
    cancel,
    retry,
    report,
    top,
    server,
    agent,
    db,
    token,
    org,
    target,
    prune,
    bench,
):
    cli.add_command(command)


def main() -> None:
    cli()
