"""benchmarks.agent_processes: real `qgjob agent` processes drain the queue, against running `true` alone."""

from __future__ import annotations

import json

import pytest

from benchmarks import agent_processes


def test_processes_drain_every_job_and_report_the_ratio_to_spawning_true(
    pg_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent_processes.main(["--server-url", pg_server, "--jobs", "200", "--processes", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    drained = result["end_to_end_processes"]
    assert drained["jobs"] == 200  # timed_drain raises unless every job completed after one attempt
    assert drained["processes"] == 2
    assert drained["jobs_per_s"] > 0
    assert result["spawn_true_per_s"] > 0
    assert result["ratio"] == round(drained["jobs_per_s"] / result["spawn_true_per_s"], 3)
