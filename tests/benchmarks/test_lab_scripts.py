"""The lab's longer measurements at toy sizes, as a user runs them (`python -m benchmarks.<name>`): they must keep
working against today's schema and queue, and what they print must be consistent. How fast is never a test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_table_hygiene_plays_every_job_to_its_end_and_counts_the_updates(pg_server: str) -> None:
    out = _run("benchmarks.table_hygiene", "--server-url", pg_server, "--agents", "2", "--groups", "5",
               "--jobs-per-group", "4", "--heartbeats-per-job", "1")  # fmt: skip
    retried = re.search(r"^5 groups x 4 jobs \((\d+) retried after an infra error\)", out, re.M)
    assert retried, out
    rows = {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"^(\w+)\s+(\d+)\s+(\d+)\s", out, re.M)}
    assert set(rows) == {"agents", "attempts", "job_groups", "jobs"}
    # every attempt is closed once: 20 jobs, and those (one run in ten) that failed with an infra error again
    assert int(retried[1]) >= 1
    assert rows["attempts"][0] == 20 + int(retried[1])
    assert rows["agents"][1] == rows["agents"][0] > 0  # an agent's beats and status changes are all HOT


def test_retention_keeps_the_reporting_totals_across_a_prune(pg_server: str) -> None:
    out = _run("benchmarks.retention", "--server-url", pg_server, "--jobs", "3000")
    assert re.search(r"pruned [1-9]\d* jobs", out), out
    totals = re.findall(r"^(org_success_rates|flaky_tests|app_versions)\s.*\s(True|False)$", out, re.M)
    assert totals == [("org_success_rates", "True"), ("flaky_tests", "True"), ("app_versions", "True")], out


def test_reporting_times_each_view_and_queue_state_query(pg_server: str) -> None:
    out = _run("benchmarks.reporting", "--server-url", pg_server, "--jobs", "2000", "--runs", "1")
    assert "| view | query |" in out
    assert "| queue state | seconds |" in out
    assert len(re.findall(r"^\| [\w ().,/-]+ \| [\d.]+ \|$", out, re.M)) >= 3, out
