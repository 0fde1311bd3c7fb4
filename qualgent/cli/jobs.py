"""submit, status, list, cancel."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import rich_click as click
from rich.markup import escape

from qualgent.cli.client import Submission
from qualgent.cli.common import api_options, checked, client, json_option
from qualgent.cli.exit_codes import INTERRUPTED
from qualgent.cli.output import console, errors, job_detail, jobs_table, print_json
from qualgent.cli.wait import junit_option, timeout_option, wait_and_report
from qualgent.cli.waiting import WaitState
from qualgent.domain import JobStatus, Priority, Target
from qualgent.wire import IdempotencyKey, Identifier, TestPath


def _choice(enum: type[Priority] | type[Target] | type[JobStatus]) -> click.Choice[str]:
    """Any case accepted (`HIGH`, `High`), passed on as the API spells it (`high`)."""
    return click.Choice([member.value for member in enum], case_sensitive=False)


@click.command()
@click.option("--org-id", required=True, callback=checked(Identifier), help="The organisation the tests belong to.")
@click.option(
    "--app-version-id",
    required=True,
    callback=checked(Identifier),
    help="The app build under test; jobs of one build are grouped.",
)
@click.option(
    "--test",
    "tests",
    required=True,
    multiple=True,
    callback=checked(TestPath),
    help="A test file to run (never read as an option: no leading '-'). Repeat for more.",
)
@click.option("--priority", type=_choice(Priority), default="medium", show_default=True)
@click.option("--target", type=_choice(Target), default="emulator", show_default=True)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Runs allowed per job when infrastructure fails.",
)
@click.option(
    "--test-retries",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="Also retry a failed test (exit 1) this many times; a test that passes on a retry is marked flaky.",
)
@click.option(
    "--test-timeout",
    type=click.IntRange(1, 86_400),
    default=None,
    help="Seconds each run may take before its process tree is killed. [default: the agent's --test-timeout]",
)
@click.option(
    "--idempotency-key",
    default=None,
    callback=checked(IdempotencyKey),
    help="Sending the same submission with the same key again returns the same jobs. Inside GitHub Actions "
    "one is derived from the run unless --no-idempotency-key.",
)
@click.option("--no-idempotency-key", is_flag=True, help="Never send an idempotency key (not even a derived one).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the results; the exit code says how they ended.")
@timeout_option
@junit_option
@api_options
@json_option
def submit(
    org_id: str,
    app_version_id: str,
    tests: tuple[str, ...],
    priority: str,
    target: str,
    max_attempts: int,
    test_retries: int,
    test_timeout: int | None,
    idempotency_key: str | None,
    no_idempotency_key: bool,
    wait_: bool,
    timeout: float | None,
    connect_timeout: float,
    fail_if_no_agent: bool,
    junit: Path | None,
    api_url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Queue tests of one app build. All of them are queued in one transaction, or none."""
    body = [
        {
            "org_id": org_id,
            "app_version_id": app_version_id,
            "test_path": test,
            "priority": priority,
            "target": target,
            "max_attempts": max_attempts,
            "test_retries": test_retries,
            "timeout_seconds": test_timeout,
        }
        for test in tests
    ]
    key = None if no_idempotency_key else idempotency_key or derived_idempotency_key(body)
    with client(api_url, token) as api:
        try:
            done = api.submit(body, key, retry_for=connect_timeout)
        except KeyboardInterrupt:
            errors.print("interrupted while submitting: the jobs may or may not be queued (`qgjob list` tells)")
            sys.exit(INTERRUPTED)
        for warning in done.warnings:
            errors.print(f"[bold yellow]warning:[/bold yellow] {escape(warning)}", soft_wrap=True)
        what = _queued_line(done, app_version_id)
        if wait_:
            if not as_json:
                errors.print(f"{what}; waiting for the results", soft_wrap=True)
            state = WaitState.of([job["id"] for job in done.jobs], done.jobs)
            extra = {"replayed": done.replayed}
            sys.exit(wait_and_report(api, state, timeout, as_json, junit, connect_timeout, fail_if_no_agent, extra))
    if as_json:
        if done.replayed:  # stdout stays the same array; the news goes to stderr
            errors.print(what, soft_wrap=True)
        print_json(done.jobs)
        return
    console.print(jobs_table(done.jobs, title=what[0].upper() + what[1:]))


def _queued_line(done: Submission, app_version_id: str) -> str:
    if done.replayed:  # the same submission with the same idempotency key: the jobs it queued the first time
        return f"already queued: {len(done.jobs)} job(s) of {app_version_id} (same idempotency key), nothing new"
    return f"queued {len(done.jobs)} job(s) of {app_version_id}"


def derived_idempotency_key(body: list[dict[str, Any]]) -> str | None:
    """Inside GitHub Actions: the run, its attempt, the job and the submission, so a retried step finds
    the jobs it queued before; a re-run of the workflow (a new attempt) queues them afresh."""
    if os.environ.get("GITHUB_ACTIONS") != "true" or not os.environ.get("GITHUB_RUN_ID"):
        return None
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    parts = [os.environ.get(name, "") for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
                                                    "GITHUB_JOB")]  # fmt: skip
    return "gha:" + ":".join(parts) + ":" + digest


def job_id_value(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a job id (a UUID)", param_hint="--job-id") from None


@click.command()
@click.option("--job-id", required=True, help="The job to show.")
@api_options
@json_option
def status(job_id: str, api_url: str, token: str | None, as_json: bool) -> None:
    """Show one job: status, attempts, result."""
    with client(api_url, token) as api:
        job = api.get(f"/jobs/{job_id_value(job_id)}")
    if as_json:
        print_json(job)
    else:
        console.print(job_detail(job))


@click.command("list")
@click.option("--org-id", callback=checked(Identifier))
@click.option("--status", "status_", type=_choice(JobStatus))
@click.option("--app-version-id", callback=checked(Identifier))
@click.option("--target", type=_choice(Target))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@api_options
@json_option
def list_jobs(
    org_id: str | None,
    status_: str | None,
    app_version_id: str | None,
    target: str | None,
    limit: int,
    api_url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    with client(api_url, token) as api:
        jobs = api.get(
            "/jobs", org_id=org_id, status=status_, app_version_id=app_version_id, target=target, limit=limit
        )
    if as_json:
        print_json(jobs)
    else:
        console.print(jobs_table(jobs))


@click.command()
@click.option("--job-id", required=True)
@api_options
@json_option
def cancel(job_id: str, api_url: str, token: str | None, as_json: bool) -> None:
    """Cancel a job. A running test is stopped by its agent within seconds."""
    with client(api_url, token) as api:
        job = api.delete(f"/jobs/{job_id_value(job_id)}")
    if as_json:
        print_json(job)
    else:
        console.print(f"job {job['id']} is {job['status']}")


@click.command()
@click.option("--job-id", "job_ids", required=True, multiple=True, help="A finished job to run again. Repeat for more.")
@api_options
@json_option
def retry(job_ids: tuple[str, ...], api_url: str, token: str | None, as_json: bool) -> None:
    """Queue finished jobs (failed, cancelled or completed) again, with their attempt budget anew.
    Their attempt history is kept. Find candidates with `qgjob list --status failed`."""
    with client(api_url, token) as api:
        jobs = [api.request("PUT", f"/jobs/{job_id_value(j)}/status", json={"status": "pending"}) for j in job_ids]
    if as_json:
        print_json(jobs)
    else:
        console.print(jobs_table(jobs, title=f"Queued {len(jobs)} job(s) again"))
