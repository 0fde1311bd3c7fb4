"""The commit-to-waiter benchmark runs against a real `qgjob server` and reports sane fields. Its figures
are for people (docs/waiting.md), not asserted here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qualgent.server.bench.common import BenchTarget, ServerProcess
from qualgent.server.bench.waiters import measure_wait_latency
from qualgent.server.db.engine import libpq_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(db_url, tmp_path / "server.log").start()
    yield running
    running.stop()


def _sane(figures: dict[str, float | int], count: int) -> None:
    assert figures["n"] == count
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 30_000


async def test_measure_wait_latency_reports_latency_connections_and_the_baseline(
    server: ServerProcess, db_url: str
) -> None:
    # 5 waiters, 8 finishes: a second round of jobs once the first 5 are done.
    result = await measure_wait_latency(BenchTarget(server.api_url, libpq_url(db_url)), waiters=5, finishes=8)

    assert (result["waiters"], result["finishes"], result["wrong_answers"]) == (5, 8, 0)
    _sane(result["latency"], 8)
    _sane(result["finish_transaction"], 8)
    _sane(result["pg_notify_baseline"], 200)
    assert result["pg_notify_baseline"]["p50_ms"] > 0  # from COMMIT sent: delivery takes time, so ratios exist
    # The server's pool and its LISTEN connection, not one per waiter (5 parked on at most 10 + 10 + 1).
    assert 1 <= result["db_connections_parked_1"] <= 21
    assert 1 <= result["db_connections_parked"] <= 21
    assert 0 <= result["db_connections_busy_parked"] <= result["db_connections_parked"]
    assert result["p50_ratio"] > 0
    assert result["p99_ratio"] > 0
    json.dumps(result, allow_nan=False)  # JSON-able as it is
    # Every job it made is final and no long-poll is left parked on the server.
    metrics = httpx.get(f"{server.api_url}/monitoring/metrics").json()
    assert metrics["listen"]["waiters"] == 0
    jobs = httpx.get(f"{server.api_url}/jobs", params={"limit": 100}).json()
    assert len(jobs) == 10
    assert {job["status"] for job in jobs} == {"completed"}


def test_the_script_prints_the_figures_as_json(server: ServerProcess, db_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.waiting", "--api-url", server.api_url,
         "--database-url", libpq_url(db_url), "--waiters", "2", "--finishes", "3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert (result["waiters"], result["finishes"]) == (2, 3)
    assert not math.isnan(result["latency"]["p50_ms"])
