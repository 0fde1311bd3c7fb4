"""`qgjob bench` as a user runs it: a real process that measures on a scratch database beside the one given,
prints every figure with its baseline and ratio as JSON, and leaves no database behind. Speed itself is not
asserted here (benchmarks are for that); that the figures are measured, consistent and complete is."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from qualgent.cli import output
from qualgent.cli.bench import _print as show
from qualgent.server.bench.common import ServerProcess
from qualgent.server.db.engine import libpq_url
from tests.e2e.harness import QGJOB, clean_env

pytestmark = pytest.mark.e2e


def _databases(server_url: str) -> set[str]:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'qualgent_bench_%'")}


def test_bench_json_reports_each_figure_with_its_baseline_and_ratio(
    pg_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [QGJOB, "bench", "--database-url", pg_server, "--jobs", "600", "--submit-jobs", "500", "--agents", "3",
            "--group-size", "20", "--waiters", "20", "--rounds", "2", "--json"]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()) as bench:
        stdout, stderr = bench.communicate(timeout=300)
    assert bench.returncode == 0, stderr
    figures = json.loads(stdout)

    base = figures["baseline"]
    assert base["claim_complete_per_s"] > 0
    assert base["insert_rows_per_s"] > 0
    assert figures["end_to_end"]["jobs"] == 600
    # A claim per group, counted when it began after the clock started: not the agents' first (parked) ones, nor, on
    # a loaded machine, a next claim that began before the bench read the submit's answer.
    assert figures["end_to_end"]["claim_latency"]["n"] >= 600 // 20 - 2 * 3
    assert figures["bulk_submit"]["jobs"] == 500
    ratios = figures["ratios"]
    # ratios are of the unrounded rates; the rates are shown to one decimal place, the ratios to three
    assert ratios["end_to_end_vs_raw_claim_complete"] == pytest.approx(
        figures["end_to_end"]["jobs_per_s"] / base["claim_complete_per_s"], abs=0.002
    )
    # each round measured the raw loop and then qualgent; the figures shown are one round's, its ratio the median
    rounds = figures["end_to_end"]["rounds"]
    assert len(rounds) == 2
    assert all(r["jobs_per_s"] > 0 and r["raw_claim_complete_per_s"] > 0 for r in rounds)
    assert ratios["end_to_end_vs_raw_claim_complete"] == min(r["ratio"] for r in rounds)  # the lower median of two
    assert {"jobs_per_s": figures["end_to_end"]["jobs_per_s"], "raw": base["claim_complete_per_s"]} in [
        {"jobs_per_s": r["jobs_per_s"], "raw": r["raw_claim_complete_per_s"]} for r in rounds
    ]
    assert ratios["bulk_submit_vs_raw_insert"] == pytest.approx(
        figures["bulk_submit"]["rows_per_s"] / base["insert_rows_per_s"], abs=0.002
    )
    for waiting in ("wait_latency_1", "wait_latency_20"):
        assert figures[waiting]["latency"]["n"] > 0
        assert figures[waiting]["p50_ratio"] > 0  # against PostgreSQL's own delivery, from the same COMMIT
    assert figures["machine"]["cpus"] >= 1
    # its scratch database (named after its pid: other test sessions may bench beside it) is gone
    assert f"qualgent_bench_{bench.pid}" not in _databases(pg_server)

    monkeypatch.setattr(output.console, "width", 200)  # a pipe's width, whatever COLUMNS the runner set (xdist: 80)
    show(figures)  # the table people read, from the same figures
    table = capsys.readouterr().out
    assert "end to end, jobs/s (3 agents, groups of 20)" in table
    assert f"{figures['end_to_end']['jobs_per_s']:,.0f}" in table
    assert f"{ratios['bulk_submit_vs_raw_insert']:.2f}x" in table
    assert "each round's ratio" in table
    assert "commit to waiter p50 / p99, ms (20 waiting)" in table


def test_bench_drains_more_jobs_than_one_submit_may_carry(pg_server: str) -> None:
    """--jobs above the API's 10,000 per request: the drain submits them in several requests, and every job is
    counted."""
    args = [QGJOB, "bench", "--database-url", pg_server, "--jobs", "10500", "--submit-jobs", "100", "--agents", "4",
            "--group-size", "50", "--waiters", "0", "--json"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=clean_env())
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["end_to_end"]["jobs"] == 10500
    assert figures["end_to_end"]["jobs_per_s"] > 0


def test_bench_refuses_a_running_server_without_its_database() -> None:
    done = subprocess.run(
        [QGJOB, "bench", "--api-url", "http://127.0.0.1:9/api"], capture_output=True, text=True, env=clean_env()
    )
    assert done.returncode == 2
    assert "--database-url" in done.stderr


def test_the_bench_server_whose_port_was_taken_starts_on_another_and_is_itself_what_answers(
    db_url: str, tmp_path: Path
) -> None:
    # the scenario: between free_port()'s probe and the server's bind, another process took the port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(db_url, tmp_path / "server.log", port=port)
        with server:
            assert server.port != port
            assert "address already in use" in server.log_path.read_text()
            assert server.process is not None
            listening = [c for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == server.port]
            assert {c.pid for c in listening if c.status == psutil.CONN_LISTEN} == {server.process.pid}
            assert httpx.get(f"{server.api_url}/health", timeout=5).status_code == 200
