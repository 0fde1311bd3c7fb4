"""`qgjob agent`: run tests on this host."""

from __future__ import annotations

import asyncio
import os
import shlex

import rich_click as click

from qualgent.agent import browserstack, orphans
from qualgent.agent.appwright import AppwrightError, AppwrightSettings
from qualgent.agent.client import ServerRejected
from qualgent.agent.executor import watch_children_by_pidfd
from qualgent.agent.loop import Agent, AgentConfig
from qualgent.agent.templates import FIELDS, CommandTemplate, TemplateError
from qualgent.cli.client import CliError
from qualgent.cli.common import api_options, checked
from qualgent.cli.exit_codes import BAD_INPUT
from qualgent.domain import Target
from qualgent.logs import FORMATS, LogFormat, configure_logging
from qualgent.wire import AgentName

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
    default=None,
    help=f"Run once per job; exit 0 passed, 1 test failed, else infrastructure. Placeholders: {_PLACEHOLDERS}. "
    "Either this or --appwright.",
)
@click.option(
    "--appwright",
    is_flag=True,
    help="Run each group as ONE Playwright (AppWright) run of its test files, each file reported as it ends "
    "(docs/appwright.md). Needs --project.",
)
@click.option("--project", default=None, help="--appwright: the Playwright project to run (e.g. android).")
@click.option(
    "--config",
    "config_file",
    default="appwright.config.ts",
    show_default=True,
    help="--appwright: the Playwright config, relative to --workdir.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="--appwright: the test project's folder (config, test paths and --build are relative to it). "
    "[default: the current folder]",
)
@click.option(
    "--build",
    default=None,
    help=f"--appwright: the group's build, passed to the run as QUALGENT_BUILD_PATH; on target browserstack it is "
    f"uploaded once per org and app version and its bs:// id passed instead. Placeholders: {_PLACEHOLDERS}.",
)
@click.option(
    "--playwright",
    default="npx playwright",
    show_default=True,
    help="--appwright: how to start Playwright's CLI in --workdir.",
)
@click.option(
    "--max-tests-per-run",
    type=click.IntRange(min=1),
    default=None,
    help="--appwright: at most this many test files per Playwright run (a bigger group is cut). [default: no limit]",
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
    "--always-install",
    is_flag=True,
    help="Run --install for every group, even when the device holds its build already (by default a group of the "
    "build this agent installed last on its target runs without installing again).",
)
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
    run_: CommandTemplate | None,
    appwright: bool,
    project: str | None,
    config_file: str,
    workdir: str | None,
    build: str | None,
    playwright: str,
    max_tests_per_run: int | None,
    name: str | None,
    test_timeout: float,
    install_timeout: float,
    always_install: bool,
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

    Example (AppWright on an emulator: one Playwright run per group, each test file reported as it ends):

        qgjob agent --target emulator --appwright --project android --workdir e2e
        --build "builds/{app_version_id}.apk"

    Any other runner, one command per test file:

        qgjob agent --target emulator --install "adb install -r builds/{app_version_id}.apk"
        --run "./run-test.sh {test_path}"
    """
    configure_logging(log_level, log_format)
    if build and "browserstack" in targets and _browserstack_account() is None:
        raise CliError(
            "--build on target browserstack uploads the build: set BROWSERSTACK_USERNAME and BROWSERSTACK_ACCESS_KEY",
            BAD_INPUT,
        )
    settings = _appwright_settings(run_, appwright, project, config_file, workdir, build, playwright, max_tests_per_run)
    config = AgentConfig(
        api_url=api_url,
        token=token,
        targets=sorted(set(targets)),
        install=install,
        run=run_,
        test_timeout=test_timeout,
        install_timeout=install_timeout,
        always_install=always_install,
        idle_poll_max=idle_poll_max,
        max_groups=max_groups,
        appwright=settings,
    )
    if name:
        config.name = name
    watch_children_by_pidfd()
    orphans.start()  # a test's process tree dies with this agent, even one killed with SIGKILL
    try:
        asyncio.run(Agent(config).run_forever())
    except ServerRejected as refused:  # e.g. a token that may not do agent work: say so, exit 2
        raise CliError(f"the server refused this agent: {refused}", BAD_INPUT) from None
    finally:
        orphans.stop()


def _appwright_settings(
    run_: CommandTemplate | None,
    appwright: bool,
    project: str | None,
    config_file: str,
    workdir: str | None,
    build: str | None,
    playwright: str,
    max_tests_per_run: int | None,
) -> AppwrightSettings | None:
    """--appwright's settings, checked before the agent registers: a missing config, workdir or Playwright install,
    or a project the config does not have, exits 2 naming it."""
    if appwright == (run_ is not None):
        raise click.UsageError("give either --run CMD (a command per test) or --appwright (a Playwright run per group)")
    if not appwright:
        for flag, value in (("--project", project), ("--workdir", workdir), ("--build", build)):
            if value is not None:
                raise click.UsageError(f"{flag} goes with --appwright")
        return None
    if not project:
        raise click.UsageError("--appwright needs --project (the Playwright project to run, e.g. android)")
    build_template = None
    if build is not None:
        try:
            build_template = CommandTemplate.parse(shlex.quote(build))
        except TemplateError as err:
            raise click.BadParameter(str(err), param_hint="--build") from None
    try:
        settings = AppwrightSettings.make(
            project, workdir, config_file, playwright, build_template, max_tests_per_run, _browserstack_account()
        )
        asyncio.run(settings.check_project(_check_env()))
    except AppwrightError as err:
        raise CliError(str(err), BAD_INPUT) from None
    return settings


def _browserstack_account() -> browserstack.Account | None:
    """BrowserStack credentials from the environment (the names AppWright reads too)."""
    username, key = os.environ.get("BROWSERSTACK_USERNAME"), os.environ.get("BROWSERSTACK_ACCESS_KEY")
    if not (username and key):
        return None
    api = os.environ.get("QUALGENT_BROWSERSTACK_API_URL") or browserstack.DEFAULT_API_URL
    return browserstack.Account(api, username, key)


def _check_env() -> dict[str, str]:
    from qualgent.agent.loop import _base_env

    return {**_base_env(), "PLAYWRIGHT_HTML_OPEN": "never"}
