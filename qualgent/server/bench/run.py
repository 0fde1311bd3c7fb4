"""`qgjob bench`: a scratch database, a real `qgjob server` on it, the raw baselines and qualgent's figures
measured in one run, and every figure as a ratio to its baseline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from qualgent.server.bench import baseline, throughput
from qualgent.server.bench.common import BenchTarget, ServerProcess, agent_token, ratio
from qualgent.server.db import migrate
from qualgent.server.db.engine import libpq_url


@dataclass(frozen=True, slots=True)
class Options:
    jobs: int = 10_000
    submit_jobs: int = 10_000
    agents: int = 8
    group_size: int = 20
    waiters: int = 1000
    rounds: int = 3  # the raw claim+complete loop and the end-to-end drain, measured alternately this many times

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def scratch_database(
    server_url: str, name: str | None = None, revision: str = "head", keep: bool = False
) -> Iterator[str]:
    """A fresh database beside `server_url`'s (`name`, else qualgent_bench_<pid>), migrated to `revision`, dropped
    afterwards unless `keep`: the bench never touches yours."""
    name = name or f"qualgent_bench_{os.getpid()}"
    admin = libpq_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url, revision)
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(target: BenchTarget, options: Options, say: Callable[[str], None]) -> dict[str, Any]:
    """Every figure and its baseline, measured on `target` (a server on a scratch database)."""
    figures: dict[str, Any] = {}
    say(
        f"raw single-row SKIP LOCKED claim, commit, complete, commit: {options.jobs} jobs, {options.agents} connections"
    )
    raw_2tx = await baseline.claim_complete(target.database_url, options.jobs, options.agents, two_transactions=True)
    say(f"raw multi-row insert of {options.submit_jobs} rows")
    raw_insert = await baseline.insert_into_jobs(target.database_url, options.submit_jobs)
    say(f"qualgent bulk submit of {options.submit_jobs} jobs")
    figures["bulk_submit"] = await throughput.bulk_submit(target, options.submit_jobs, options.group_size)
    async with agent_token(target) as agents_target:
        median_raw, figures["end_to_end"] = await _end_to_end_in_rounds(agents_target, options, say)
        figures["baseline"] = {
            "claim_complete_per_s": median_raw,
            "claim_then_complete_per_s": round(raw_2tx, 1),
            "insert_rows_per_s": round(raw_insert, 1),
        }
    if options.waiters:
        from qualgent.server.bench import waiters

        for count in sorted({1, options.waiters}):
            say(f"commit to waiter, {count} waiter(s)")
            figures[f"wait_latency_{count}"] = await waiters.measure_wait_latency(target, count)
    e2e, submit, base = figures["end_to_end"]["jobs_per_s"], figures["bulk_submit"]["rows_per_s"], figures["baseline"]
    figures["ratios"] = {
        "end_to_end_vs_raw_claim_complete": ratio(e2e, base["claim_complete_per_s"]),
        "end_to_end_vs_raw_claim_then_complete": ratio(e2e, base["claim_then_complete_per_s"]),
        "bulk_submit_vs_raw_insert": ratio(submit, base["insert_rows_per_s"]),
    }
    return figures


async def _end_to_end_in_rounds(
    target: BenchTarget, options: Options, say: Callable[[str], None]
) -> tuple[float, dict[str, Any]]:
    """The raw claim+complete loop, then qualgent's drain, `options.rounds` times: the machine's load moves between
    two measurements seconds apart. The round with the median ratio is the one reported (its raw figure and its
    drain), with every round's figures in `rounds`."""
    rounds = []
    for number in range(1, options.rounds + 1):
        say(
            f"round {number}/{options.rounds}: raw single-row SKIP LOCKED claim+complete, then qualgent end to "
            f"end: {options.jobs} jobs, {options.agents} agents (groups of {options.group_size})"
        )
        raw = round(await baseline.claim_complete(target.database_url, options.jobs, options.agents), 1)
        await baseline.drop(target.database_url)
        # As pgbench vacuums before it measures: statistics of tables made seconds ago would have the planner
        # scan where it should look up (autovacuum catches up within a minute in a real deployment).
        await throughput.vacuum_analyze(target.database_url)
        drained = await throughput.drain(
            target, options.jobs, options.group_size, options.agents, org_id=f"bench-drain-{number}"
        )
        rounds.append((raw, drained))
    median_raw, median = sorted(rounds, key=lambda r: r[1]["jobs_per_s"] / r[0])[(len(rounds) - 1) // 2]
    median["rounds"] = [
        {
            "raw_claim_complete_per_s": raw,
            "jobs_per_s": drained["jobs_per_s"],
            "ratio": ratio(drained["jobs_per_s"], raw),
        }
        for raw, drained in rounds
    ]
    return median_raw, median


def run(
    database_url: str | None, data_dir: Path | None, options: Options, say: Callable[[str], None]
) -> dict[str, Any]:
    """The whole bench: on `database_url`'s server (a scratch database beside it) or the embedded PostgreSQL."""
    started = time.perf_counter()
    embedded = None
    if database_url is None:
        from qualgent.server.db.embedded import EmbeddedPostgres
        from qualgent.server.settings import Settings

        embedded = EmbeddedPostgres(data_dir or Settings().data_dir)
        say(f"starting the embedded PostgreSQL in {embedded.data_dir}")
        database_url = embedded.start()
    try:
        with scratch_database(database_url) as url, tempfile.TemporaryDirectory(prefix="qgjob-bench-") as tmp:
            # As deployed: the server enforces tokens, and the agents present an agent token (checked on every
            # request); the bench's own calls use the admin token.
            admin = secrets.token_urlsafe(32)
            server = ServerProcess(url, Path(tmp) / "server.log", env={"QUALGENT_ADMIN_TOKEN": admin})
            say(f"starting qgjob server on a scratch database ({make_url(url).database})")
            with server:
                target = BenchTarget(
                    server.api_url, libpq_url(url), admin, server_pid=server.process.pid if server.process else None
                )
                try:
                    facts = machine(url)
                    figures = asyncio.run(measure(target, options, say))
                finally:
                    problems = [line for line in server.log_tail(400).splitlines() if "ERROR" in line]
                    if problems:
                        say("the server logged errors:\n" + "\n".join(problems[-20:]))
    finally:
        if embedded is not None:
            embedded.stop()
    seconds = round(time.perf_counter() - started, 1)
    return {"machine": facts, "options": options.as_dict(), **figures, "seconds": seconds}


def machine(database_url: str) -> dict[str, Any]:
    settings = ("server_version", "fsync", "synchronous_commit")
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in settings)).fetchone()
    assert row is not None
    postgres = dict(zip(("postgresql", *settings[1:]), row, strict=True))
    return {"cpus": os.cpu_count(), "python": platform.python_version(), **postgres}
