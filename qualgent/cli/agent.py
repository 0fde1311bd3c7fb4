"""`qgjob agent`: run tests on this host."""

from __future__ import annotations

import asyncio

import rich_click as click

from qualgent.agent.client import ServerRejected
from qualgent.agent.executor import watch_children_by_pidfd
from qualgent.agent.loop import Agent, AgentConfig
from qualgent.agent.templates import FIELDS, CommandTemplate, TemplateError
from qualgent.api.schemas import AgentName
from qualgent.cli.client import CliError
from qualgent.cli.common import api_options, checked
from qualgent.cli.exit_codes import BAD_INPUT
from qualgent.domain import Target
from qualgent.logs import FORMATS, LogFormat, configure_logging

_PLACEHOLDERS = ", ".join(f"{{{f}}}" for f in FIELDS)


def _template(_: click.Context, param: click.Parameter, value: str | None) -> CommandTemplate | None:
    if value is None:
        return None
    try:
        return CommandTemplate.parse(value)
    except TemplateError as err:
        raise click.BadParameter(str(err), param=param) from None


@click.command()
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice([t.value for t in Target]),
    default=["emulator"],
    show_default=True,
    help="A kind of target this host serves. Repeat for more.",
)
@click.option(
    "--install",
    callback=_template,
    default=None,
    help=f"Run once per group, before its tests (install the build). Placeholders: {_PLACEHOLDERS}.",
)
@click.option(
    "--run",
    "run_",
    callback=_template,
    required=True,
    help=f"Run once per job; exit 0 passed, 1 test failed, else infrastructure. Placeholders: {_PLACEHOLDERS}.",
)
@click.option("--name", default=None, callback=checked(AgentName), help="How this agent is listed. [default: host-pid]")
@click.option(
    "--test-timeout",
    type=click.FloatRange(min=1),
    default=900,
    show_default=True,
    help="Seconds a test may run before its process tree is killed.",
)
@click.option("--install-timeout", type=click.FloatRange(min=1), default=600, show_default=True)
@click.option(
    "--idle-poll-max",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Longest wait between claims when there is no work (the wait backs off up to it).",
)
@click.option("--max-groups", type=click.IntRange(min=1), default=None, help="Exit after running this many groups.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    envvar="QUALGENT_LOG_FORMAT",
    show_envvar=True,
    default="text",
    show_default=True,
    help="Log lines as text or JSON; either way each line carries the agent, group and job ids.",
)
@api_options
def agent(
    targets: tuple[str, ...],
    install: CommandTemplate | None,
    run_: CommandTemplate,
    name: str | None,
    test_timeout: float,
    install_timeout: float,
    idle_poll_max: float,
    max_groups: int | None,
    log_level: str,
    log_format: LogFormat,
    api_url: str,
    token: str | None,
) -> None:
    """Run tests on this host: claim whole app-version groups, install once, run each test, report.

    Commands are split like a shell line but no shell runs them; each word is formatted with the
    job's fields, so a test path is always exactly one argument.

    Example (AppWright on an emulator):

        qgjob agent --target emulator --install "adb install -r builds/{app_version_id}.apk"
        --run "npx appwright test --project android {test_path}"
    """
    configure_logging(log_level, log_format)
    config = AgentConfig(
        api_url=api_url,
        token=token,
        targets=sorted(set(targets)),
        install=install,
        run=run_,
        test_timeout=test_timeout,
        install_timeout=install_timeout,
        idle_poll_max=idle_poll_max,
        max_groups=max_groups,
    )
    if name:
        config.name = name
    watch_children_by_pidfd()
    try:
        asyncio.run(Agent(config).run_forever())
    except ServerRejected as refused:  # e.g. a token that may not do agent work: say so, exit 2
        raise CliError(f"the server refused this agent: {refused}", BAD_INPUT) from None
