"""qgjob bench: qualgent's speed against raw PostgreSQL, measured in one run on one database."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import rich_click as click
from rich.table import Table

from qualgent.cli.client import CliError
from qualgent.cli.common import json_option
from qualgent.cli.exit_codes import BAD_INPUT, INFRA_ERROR
from qualgent.cli.output import console, errors, print_json
from qualgent.server.bench import appwright as bench_appwright
from qualgent.server.bench import run as bench_run
from qualgent.server.bench.common import BenchTarget
from qualgent.server.db.engine import libpq_url

# What the figures should reach on a 2-core machine (docs/performance.md).
TARGETS = {
    "end_to_end_vs_raw_claim_complete": 1.0,
    "bulk_submit_vs_raw_insert": 0.5,
}


@click.command()
@click.option(
    "--database-url",
    default=None,
    help="A PostgreSQL server to measure on: the bench makes a scratch database beside this URL's and drops "
    "it afterwards. Unset: the embedded PostgreSQL (in --data-dir).",
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="The embedded PostgreSQL's data dir.")
@click.option(
    "--api-url",
    default=None,
    help="Measure a running qgjob server instead of starting one; --database-url must then be that server's "
    "own database. The server must have no agents of its own (they would take the bench's jobs) and no "
    "rate limit (QUALGENT_RATE_LIMIT=0).",
)
@click.option("--token", envvar="QGJOB_TOKEN", default=None, help="Admin token of the running server (--api-url).")
@click.option("--jobs", type=click.IntRange(min=100, max=1_000_000), default=10_000, show_default=True,
              help="Jobs drained end to end, and rows of the raw claim+complete baseline.")  # fmt: skip
@click.option("--submit-jobs", type=click.IntRange(min=100, max=10_000), default=10_000, show_default=True,
              help="Jobs in the one bulk submit timed, and rows of the raw insert baseline.")  # fmt: skip
@click.option("--agents", type=click.IntRange(min=1, max=200), default=8, show_default=True,
              help="Agents simulated here (the real agent code, a no-op test); also baseline workers.")  # fmt: skip
@click.option("--rounds", type=click.IntRange(min=1, max=9), default=3, show_default=True,
              help="Measure the raw claim+complete loop and the end-to-end drain alternately this many times and "
              "report the round with the median ratio (all rounds are in --json): the machine's load moves "
              "between two measurements.")  # fmt: skip
@click.option("--group-size", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Tests per app build (the jobs an agent claims at once).")  # fmt: skip
@click.option("--waiters", type=click.IntRange(min=0, max=5000), default=1000, show_default=True,
              help="Long-polls at once for the commit-to-waiter latency (also measured with 1); 0: skip.")  # fmt: skip
@click.option(
    "--appwright",
    "appwright_project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Only measure AppWright runs: --group-size one-test files as one Playwright run (qgjob agent --appwright) "
    "against one run per file, with the Playwright installed in this folder's node_modules (no database).",
)
@json_option
def bench(
    database_url: str | None,
    data_dir: Path | None,
    api_url: str | None,
    token: str | None,
    jobs: int,
    submit_jobs: int,
    agents: int,
    rounds: int,
    group_size: int,
    waiters: int,
    appwright_project: Path | None,
    as_json: bool,
) -> None:
    """Measure qualgent against raw PostgreSQL on the same database, in the same run.

    Baselines: a hand-written single-row SKIP LOCKED claim+complete loop and a plain multi-row INSERT.
    qualgent: bulk submit over HTTP, end-to-end jobs/s with agents claiming whole groups (a no-op test),
    claim latency, commit-to-waiter latency. Every figure also as a ratio to its baseline. Run it on a quiet
    machine: other work on it shows in the figures.
    """
    options = bench_run.Options(
        jobs=jobs,
        submit_jobs=submit_jobs,
        agents=agents,
        rounds=rounds,
        group_size=group_size,
        waiters=waiters,
    )

    def say(message: str) -> None:
        errors.print(f"[dim]bench:[/dim] {message}")

    if appwright_project is not None:
        _bench_appwright(appwright_project, group_size, rounds, as_json, say)
        return
    if api_url is not None:
        if database_url is None:
            raise CliError("--api-url needs --database-url: the running server's own database", BAD_INPUT)
        target = BenchTarget(api_url.rstrip("/"), libpq_url(database_url), token)
        _check_running_server(target)
        figures = asyncio.run(bench_run.measure(target, options, say))
        result = {"machine": bench_run.machine(database_url), "options": options.as_dict(), **figures}
    else:
        result = bench_run.run(database_url, data_dir, options, say)
    if as_json:
        print_json(result)
    else:
        _print(result)


def _bench_appwright(project: Path, files: int, rounds: int, as_json: bool, say: Callable[[str], None]) -> None:
    try:
        figures = bench_appwright.measure(project, files, rounds, say)
    except bench_appwright.BenchError as err:
        raise CliError(str(err), BAD_INPUT) from None
    if as_json:
        print_json(figures)
        return
    console.print(
        f"{files} one-test files: one Playwright run {figures['one_run_seconds']:.2f} s, one run per file "
        f"{figures['per_test_runs_seconds']:.2f} s: [bold]{figures['one_run_vs_per_test_runs']:.1f}x[/bold] "
        f"(median of {len(figures['rounds'])} round(s))"
    )


def _check_running_server(target: BenchTarget) -> None:
    try:
        answer = httpx.get(f"{target.api_url}/agents", headers=target.headers(), timeout=10)
    except httpx.HTTPError as err:
        raise CliError(f"cannot reach {target.api_url}: {err}", INFRA_ERROR) from None
    if answer.status_code != 200:
        raise CliError(f"{target.api_url}/agents answered {answer.status_code}: an admin --token?", BAD_INPUT)
    busy = [a["name"] for a in answer.json() if a.get("status") in ("idle", "busy")]
    if busy:
        raise CliError(
            f"the server has agents of its own ({', '.join(busy[:5])}): they would run the bench's jobs", BAD_INPUT
        )


def _print(result: dict[str, Any]) -> None:
    base, ratios = result["baseline"], result["ratios"]
    machine = result["machine"]
    table = Table(title=f"qgjob bench: {machine['cpus']} CPUs, PostgreSQL {machine['postgresql']}")
    for column in ("", "qualgent", "raw PostgreSQL", "ratio", "target"):
        table.add_column(column, justify="left" if not column else "right")
    e2e, submit = result["end_to_end"], result["bulk_submit"]

    def row(name: str, ours: str, raw: str, key: str | None, value: float | None = None) -> None:
        value = ratios.get(key) if key else value
        goal = TARGETS.get(key or "")
        shown = "" if value is None else f"{value:.2f}x"
        if value is not None and goal is not None:
            shown = f"[{'green' if value >= goal else 'red'}]{shown}[/]"
        table.add_row(name, ours, raw, shown, "" if goal is None else f">= {goal:.1f}x")

    row(
        f"end to end, jobs/s ({e2e['agents']} agents, groups of {e2e['group_size']})",
        f"{e2e['jobs_per_s']:,.0f}",
        f"{base['claim_complete_per_s']:,.0f}",
        "end_to_end_vs_raw_claim_complete",
    )
    row("  vs claim, commit, complete, commit", "", f"{base['claim_then_complete_per_s']:,.0f}",
        "end_to_end_vs_raw_claim_then_complete")  # fmt: skip
    row(
        f"bulk submit of {submit['jobs']:,} jobs, rows/s",
        f"{submit['rows_per_s']:,.0f}",
        f"{base['insert_rows_per_s']:,.0f}",
        "bulk_submit_vs_raw_insert",
    )
    claim = e2e["claim_latency"]
    row("claim latency p50 / p99, ms (queue full)", f"{_ms(claim['p50_ms'])} / {_ms(claim['p99_ms'])}", "", None)
    for key in sorted(k for k in result if k.startswith("wait_latency_")):
        wait = result[key]
        baseline = wait.get("pg_notify_baseline") or {}
        row(
            f"commit to waiter p50 / p99, ms ({wait['waiters']} waiting)",
            f"{_ms(wait['latency']['p50_ms'])} / {_ms(wait['latency']['p99_ms'])}",
            f"{_ms(baseline.get('p50_ms'))} / {_ms(baseline.get('p99_ms'))}",
            None,
            wait.get("p50_ratio"),
        )
    console.print(table)
    if len(e2e.get("rounds", [])) > 1:
        each = " ".join(f"{r['ratio']:.2f}x" for r in e2e["rounds"])
        console.print(
            f"[dim]end to end, each round's ratio (raw loop, then qualgent): {each}; the median round is shown"
        )
    console.print(
        f"[dim]ratios are against the raw figure measured in the same run; {result.get('seconds', '?')} s; "
        "--json for every figure[/dim]"
    )


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.1f}"
