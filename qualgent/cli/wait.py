"""`qgjob wait`, and the waiting half of `qgjob submit --wait`."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import rich_click as click
from rich.markup import escape

from qualgent.cli import outcomes
from qualgent.cli.client import ApiClient
from qualgent.cli.common import api_options, client, json_option
from qualgent.cli.exit_codes import HELP, INFRA_ERROR, INTERRUPTED, TERMINATED
from qualgent.cli.output import console, errors, jobs_table, print_json
from qualgent.cli.waiting import CONNECT_TIMEOUT, Progress, WaitState, no_agent_message, wait_for_jobs


def timeout_option(func: Any) -> Any:
    func = click.option(
        "--fail-if-no-agent",
        is_flag=True,
        help="Exit 3 at once when pending jobs need a target that no online agent serves, instead of waiting "
        "for one to come.",
    )(func)
    func = click.option(
        "--connect-timeout",
        type=click.FloatRange(min=0),
        default=CONNECT_TIMEOUT,
        show_default=True,
        help="Exit 3 when the server was never reached in this many seconds (a wrong --api-url). A server "
        "reached once and then restarting is waited for until --timeout.",
    )(func)
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=None,
        help="Stop waiting after this many seconds (exit 4 if a job is unfinished). [default: no limit]",
    )(func)


def junit_option(func: Any) -> Any:
    return click.option(
        "--junit",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        default=None,
        help="Write a JUnit XML report here: one testcase per job.",
    )(func)


def wait_and_report(
    api: ApiClient,
    state: WaitState,
    timeout: float | None,
    as_json: bool,
    junit: Path | None,
    connect_timeout: float = CONNECT_TIMEOUT,
    fail_if_no_agent: bool = False,
    extra: dict[str, Any] | None = None,
) -> int:
    """Wait, then print and write what CI needs; returns the exit code. Ctrl-C ends the wait, not the jobs:
    what is known is reported (unfinished jobs as such) and the exit code is 130."""
    interrupted = False
    with Progress(errors, len(state.known)) as progress, _sigterm_interrupts() as terminated:
        try:
            wait_for_jobs(api, state, timeout, progress, connect_timeout, fail_if_no_agent)
        except KeyboardInterrupt:
            interrupted = True
    jobs = state.jobs()
    ended = "interrupted" if interrupted else "gave_up" if state.gave_up else "timed_out"
    code = outcomes.exit_code(jobs)
    if state.gave_up:  # its unfinished jobs did not time out: no agent can run them (an infrastructure problem)
        code = max(outcomes.exit_code([job for job in jobs if outcomes.kind(job) != "unfinished"]), INFRA_ERROR)
    if interrupted:
        code = TERMINATED if terminated else INTERRUPTED
    notes = []
    if state.gave_up or state.no_agent_for:
        notes.append(f"⚠️ {state.gave_up or no_agent_message(state.no_agent_for)}: the jobs that need it stay queued")
    if junit is not None:
        outcomes.write_junit(jobs, junit, ended=ended)
    outcomes.publish_to_github(jobs, annotations_to_stdout=not as_json, notes=notes)
    if as_json:
        print_json({**outcomes.report(jobs), "exit_code": code, **(extra or {}), "interrupted": interrupted,
                    "no_agent_for": state.no_agent_for})  # fmt: skip
    else:
        console.print(jobs_table(jobs, title=outcomes.Summary.of(jobs).line()))
    if state.gave_up:
        errors.print(f"[red]gave up:[/red] {escape(state.gave_up)}; the jobs stay queued", soft_wrap=True)
    if interrupted:
        _say_jobs_keep_running(jobs, junit)
    return code


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[list[bool]]:
    """While waiting, SIGTERM ends the wait as Ctrl-C does (a CI runner cancelling a step sends SIGINT, then
    SIGTERM a few seconds later): the report is still written. The list holds True once SIGTERM came."""
    came: list[bool] = []

    def on_sigterm(_signum: int, _frame: object) -> None:
        came.append(True)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield came
        return
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say_jobs_keep_running(jobs: list[outcomes.Job], junit: Path | None) -> None:
    unfinished = [job["id"] for job in jobs if outcomes.kind(job) == "unfinished"]
    written = f"; the JUnit report ({junit}) lists them as unfinished" if junit is not None and unfinished else ""
    if not unfinished:
        errors.print("interrupted: every job had finished", soft_wrap=True)
        return
    errors.print(
        f"interrupted: the wait stopped, not the jobs: {len(unfinished)} job(s) keep running on the server{written}. "
        f"Wait again with `qgjob wait {' '.join('--job-id ' + i for i in unfinished[:3])}"
        f"{' ...' if len(unfinished) > 3 else ''}`, or cancel with `qgjob cancel --job-id ID`.",
        soft_wrap=True,
    )


@click.command(epilog=HELP)
@click.option("--job-id", "job_ids", required=True, multiple=True, help="A job to wait for. Repeat for more.")
@timeout_option
@junit_option
@api_options
@json_option
def wait(
    job_ids: tuple[str, ...],
    timeout: float | None,
    connect_timeout: float,
    fail_if_no_agent: bool,
    junit: Path | None,
    api_url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Wait until the jobs are finished; the exit code says how they ended (130: interrupted by Ctrl-C; the
    jobs keep running)."""
    from qualgent.cli.jobs import job_id_value

    ids: Sequence[str] = list(dict.fromkeys(job_id_value(value) for value in job_ids))
    with client(api_url, token) as api:
        code = wait_and_report(api, WaitState.of(ids), timeout, as_json, junit, connect_timeout, fail_if_no_agent)
    sys.exit(code)
