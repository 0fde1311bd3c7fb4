"""benchmarks.agent_processes: real `qgjob agent` processes drain the queue, against running `true` alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_processes_drain_every_job_and_report_the_ratio_to_spawning_true(pg_server: str) -> None:
    # In a process of its own, as it is run: it waits for its children by pidfd (asyncio's child watcher is
    # process-wide on Python 3.11, and this worker's other tests spawn with the default one).
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.agent_processes", "--server-url", pg_server, "--jobs", "200",
         "--processes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    drained = result["end_to_end_processes"]
    assert drained["jobs"] == 200  # timed_drain raises unless every job completed after one attempt
    assert drained["processes"] == 2
    assert drained["jobs_per_s"] > 0
    assert result["spawn_true_per_s"] > 0
    # the ratio is of the unrounded rates; the rates are shown to one decimal place, the ratio to three
    assert result["ratio"] == pytest.approx(drained["jobs_per_s"] / result["spawn_true_per_s"], abs=0.002)
