"""The main path as a newcomer sees it: submit, group, claim, run, report, with real processes."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Cli, Server, agent, fake_appwright, wait_for

pytestmark = pytest.mark.e2e


def test_an_agent_installs_each_app_version_once_and_runs_its_tests_back_to_back(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    cli.submit("tests/a.spec.ts", app="v1")
    cli.submit("tests/x.spec.ts", app="v2")
    cli.submit("tests/b.spec.ts", app="v1")
    cli.submit("tests/c-fail.spec.ts", app="v1")
    script, runs = fake_appwright(tmp_path)

    with agent(server.api_url, script, tmp_path / "agent.log", "--max-groups", "2") as process:
        assert process.wait(60) == 0, (tmp_path / "agent.log").read_text()

    calls = [line.rsplit(" pid=", 1)[0] for line in runs.read_text().splitlines()]
    assert calls == [
        "install v1",
        "run v1 tests/a.spec.ts",
        "run v1 tests/b.spec.ts",
        "run v1 tests/c-fail.spec.ts",
        "install v2",
        "run v2 tests/x.spec.ts",
    ]
    jobs = {job["test_path"]: job for job in cli.json("list")}
    assert {path: job["status"] for path, job in jobs.items()} == {
        "tests/a.spec.ts": "completed",
        "tests/b.spec.ts": "completed",
        "tests/c-fail.spec.ts": "failed",
        "tests/x.spec.ts": "completed",
    }
    failed = cli.json("status", "--job-id", jobs["tests/c-fail.spec.ts"]["id"])
    assert failed["result"]["exit_code"] == 1
    assert failed["started_at"] is not None
    assert failed["finished_at"] >= failed["started_at"]
    passed = cli.json("status", "--job-id", jobs["tests/a.spec.ts"]["id"])
    assert passed["result"]["exit_code"] == 0


def test_groups_run_by_tier_then_priority_then_age_and_targets_are_respected(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    httpx.put(f"{server.api_url}/orgs/gold", json={"tier": "premium"}).raise_for_status()
    httpx.put(f"{server.api_url}/orgs/silver", json={"tier": "enterprise"}).raise_for_status()
    cli.submit("t.spec.ts", org_id="bronze", app="bronze-low", priority="low")
    cli.submit("t.spec.ts", org_id="bronze", app="bronze-high", priority="high")
    cli.submit("t.spec.ts", org_id="silver", app="silver-low", priority="low")
    cli.submit("t.spec.ts", org_id="gold", app="gold-low", priority="low")
    device = cli.submit("t.spec.ts", org_id="gold", app="gold-device", target="device", priority="high")
    script, runs = fake_appwright(tmp_path)

    with agent(server.api_url, script, tmp_path / "agent.log", "--target", "emulator", "--max-groups", "4") as p:
        assert p.wait(60) == 0

    installs = [line.split()[1] for line in runs.read_text().splitlines() if line.startswith("install")]
    assert installs == ["gold-low", "silver-low", "bronze-high", "bronze-low"]
    assert cli.json("status", "--job-id", device[0]["id"])["status"] == "pending"


def test_jobs_in_the_embedded_database_survive_a_server_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Server(tmp_path / "server.log", data_dir=data_dir).start(timeout=120)
    job = Cli(first.api_url).submit("tests/keep.spec.ts")[0]
    assert first.stop() == 0
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "SIGTERM should stop the embedded PostgreSQL"

    second = Server(tmp_path / "server.log", data_dir=data_dir).start(timeout=120)
    try:
        shown = Cli(second.api_url).json("status", "--job-id", job["id"])
        assert shown["test_path"] == "tests/keep.spec.ts"
        assert shown["status"] == "pending"
    finally:
        second.stop()


def test_a_server_killed_with_sigkill_restarts_on_the_same_embedded_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Server(tmp_path / "server.log", data_dir=data_dir).start(timeout=120)
    job = Cli(first.api_url).submit("tests/keep.spec.ts")[0]
    first.stop(signal.SIGKILL)
    assert (data_dir / "pgdata" / "postmaster.pid").exists(), "kill -9 leaves the postmaster running"

    second = Server(tmp_path / "server.log", data_dir=data_dir).start(timeout=120)
    try:
        assert Cli(second.api_url).json("status", "--job-id", job["id"])["status"] == "pending"
        assert "reattached" in second.log() or "stale" in second.log()
    finally:
        assert second.stop() == 0
    wait_for(lambda: not (data_dir / "pgdata" / "postmaster.pid").exists(), what="the postmaster to stop")
