"""`qgjob wait`, and the waiting half of `qgjob submit --wait`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rich_click as click

from qualgent.cli import outcomes
from qualgent.cli.client import ApiClient
from qualgent.cli.common import api_options, client, json_option
from qualgent.cli.exit_codes import HELP
from qualgent.cli.output import console, errors, jobs_table, print_json
from qualgent.cli.waiting import Progress, wait_for_jobs


def timeout_option(func: Any) -> Any:
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
    api: ApiClient, job_ids: Sequence[str], timeout: float | None, as_json: bool, junit: Path | None
) -> int:
    """Wait, then print and write what CI needs; returns the exit code."""
    with Progress(errors, len(job_ids)) as progress:
        jobs = wait_for_jobs(api, job_ids, timeout, progress)
    if junit is not None:
        outcomes.write_junit(jobs, junit)
    outcomes.publish_to_github(jobs, annotations_to_stdout=not as_json)
    if as_json:
        print_json(outcomes.report(jobs))
    else:
        console.print(jobs_table(jobs, title=outcomes.Summary.of(jobs).line()))
    return outcomes.exit_code(jobs)


@click.command(epilog=HELP)
@click.option("--job-id", "job_ids", required=True, multiple=True, help="A job to wait for. Repeat for more.")
@timeout_option
@junit_option
@api_options
@json_option
def wait(
    job_ids: tuple[str, ...], timeout: float | None, junit: Path | None, api_url: str, token: str | None, as_json: bool
) -> None:
    """Wait until the jobs are finished; the exit code says how they ended."""
    from qualgent.cli.jobs import job_id_value

    ids = list(dict.fromkeys(job_id_value(value) for value in job_ids))
    with client(api_url, token) as api:
        code = wait_and_report(api, ids, timeout, as_json, junit)
    sys.exit(code)
