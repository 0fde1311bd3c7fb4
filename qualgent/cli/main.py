"""qgjob: the one command of qualgent."""

from __future__ import annotations

import os
import sys

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
if not sys.stderr.isatty() and "COLUMNS" not in os.environ:
    # Errors in CI logs and pipes: one long line that grep finds, not a message folded into 80 columns.
    click.rich_click.WIDTH = click.rich_click.MAX_WIDTH = 200


@click.group(epilog=HELP)
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
