"""Crashes, freezes and restarts with real processes: nothing acknowledged is lost, nothing runs twice
when it should not, and nobody presumed dead overwrites anything. The server runs with 3 s leases."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from qualgent.server.db import migrate
from qualgent.server.db.embedded import EmbeddedPostgres
from tests.e2e.harness import QGJOB, Cli, Server, agent, clean_env, fake_appwright, wait_for
from tests.eventually import parked_now

pytestmark = pytest.mark.e2e


def _runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _job(cli: Cli, job_id: str) -> dict[str, object]:
    return cli.json("status", "--job-id", job_id)  # type: ignore[no-any-return]


def test_an_agent_killed_mid_test_loses_nothing(server: Server, cli: Cli, tmp_path: Path) -> None:
    script, runs = fake_appwright(tmp_path)
    job = cli.submit("tests/checkout-sleep2.spec.ts")[0]
    with agent(server.api_url, script, tmp_path / "a.log", "--name", "doomed") as doomed:
        wait_for(lambda: any("checkout" in line for line in _runs(runs)), what="the test to start")
        # Mid-test for the server too: the start reported (an agent holds a start up to its 25 ms linger; one
        # killed before sending it loses no attempt, the job just runs again).
        wait_for(lambda: _job(cli, job["id"])["status"] == "running", what="the start to be recorded")
        doomed.kill()
        killed_at = time.monotonic()
        doomed.wait()
    with agent(server.api_url, script, tmp_path / "b.log", "--name", "survivor"):
        wait_for(lambda: sum("checkout" in line for line in _runs(runs)) == 2, timeout=30, what="a second run")
        restarted_after = time.monotonic() - killed_at
        final = wait_for(lambda: (j := _job(cli, job["id"]))["status"] == "completed" and j, timeout=30)
    history = final["attempt_history"]  # type: ignore[index]
    assert [a["outcome"] for a in history] == ["infra_error", "passed"]
    assert "lease" in history[0]["error"]
    print(f"recovery: the job ran again {restarted_after:.1f}s after its agent was killed (lease 3 s)")
    assert restarted_after < 3 * 3 + 5, f"the job ran again {restarted_after:.1f}s after the crash"


def test_a_frozen_agent_cannot_overwrite_the_result_of_the_one_that_took_over(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    script, runs = fake_appwright(tmp_path)
    job = cli.submit("tests/pay-sleep4.spec.ts")[0]
    with agent(server.api_url, script, tmp_path / "frozen.log", "--name", "frozen", env={"FAKE_EXIT": "1"}) as frozen:
        wait_for(lambda: any(line.startswith("run ") for line in _runs(runs)), what="the test to start")
        frozen.send_signal(signal.SIGSTOP)
        try:
            with agent(server.api_url, script, tmp_path / "b.log", "--name", "taker", "--max-groups", "1") as taker:
                assert taker.wait(60) == 0
            assert _job(cli, job["id"])["status"] == "completed"
        finally:
            frozen.send_signal(signal.SIGCONT)
        # The frozen agent wakes, its own run ends (exit 1) and it tries to report: the server refuses it.
        wait_for(lambda: _refused(tmp_path / "frozen.log"), timeout=30, what="the frozen agent's report refused")
    shown = _job(cli, job["id"])
    assert shown["status"] == "completed"
    assert shown["result"]["exit_code"] == 0  # type: ignore[index]


def _refused(log: Path) -> bool:
    text = log.read_text()
    return "not recorded" in text or "lost" in text


def test_infra_once_then_pass_and_always_infra(server: Server, cli: Cli, tmp_path: Path) -> None:
    flag = tmp_path / "first-run-fails"
    flag.write_text("x")
    wrapper = tmp_path / "flaky-infra"
    wrapper.write_text(f"#!/bin/sh\nif [ -e {flag} ]; then rm {flag}; exit 3; fi\nexit 0\n")
    wrapper.chmod(0o755)
    script, _ = fake_appwright(tmp_path)
    once = cli.submit("tests/once.spec.ts")[0]
    args = [QGJOB, "agent", "--run", f"{wrapper} {{test_path}}", "--idle-poll-max", "0.2", "--name", "w"]
    log = (tmp_path / "w.log").open("ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=clean_env(QGJOB_API_URL=server.api_url))
    try:
        done = wait_for(lambda: (j := _job(cli, once["id"]))["status"] in ("completed", "failed") and j, timeout=40)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert (done["status"], done["attempts"]) == ("completed", 2)

    with agent(server.api_url, script, tmp_path / "a.log"):
        always = cli.run("submit", "--org-id", "acme", "--app-version-id", "v9", "--test", "tests/x-infra.spec.ts",
                         "--wait", "--timeout", "60", "--json", timeout=90)  # fmt: skip
        failing = cli.run("submit", "--org-id", "acme", "--app-version-id", "v9", "--test", "tests/x-fail.spec.ts",
                          "--wait", "--timeout", "60", "--json", timeout=90)  # fmt: skip
    infra = json.loads(always.stdout)["jobs"][0]
    assert (always.returncode, infra["status"], infra["attempts"]) == (3, "failed", 3)
    test_failure = json.loads(failing.stdout)["jobs"][0]
    assert (failing.returncode, test_failure["status"], test_failure["attempts"]) == (1, "failed", 1)


def test_a_job_cancelled_while_its_group_runs_is_stopped_when_its_start_is_refused(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    """Cancelled after its group was claimed, before the agent came to it: the agent starts it (its start rides on
    the next report), the server refuses the start, and the agent stops the run at once, recording nothing. (The
    stop can come before the stand-in test has even logged its start: then there is no process left to look for.)"""
    script, runs = fake_appwright(tmp_path)
    first = cli.submit("tests/a-sleep5.spec.ts")[0]
    second = cli.submit("tests/b-sleep60.spec.ts")[0]
    log = tmp_path / "a.log"
    with agent(server.api_url, script, log):
        wait_for(lambda: any("a-sleep5" in run for run in _runs(runs)), what="the first test to start")
        assert cli.run("cancel", "--job-id", second["id"]).returncode == 0
        wait_for(lambda: _job(cli, first["id"])["status"] == "completed", timeout=30, what="the first to complete")
        wait_for(lambda: "cancelled meanwhile" in log.read_text(), timeout=10, what="the agent to drop the second")
        # The agent says so once the run it started has ended: no process of it is left, whether or not it had
        # got as far as logging its start (a check of the processes themselves, not of a list that may be empty).
        assert _running(script, "b-sleep60") == []
    shown = _job(cli, second["id"])
    assert shown["status"] == "cancelled"
    assert shown["attempt_history"] == []  # the start was refused: no attempt


def test_cancel_during_a_run_stops_the_test_within_seconds(server: Server, cli: Cli, tmp_path: Path) -> None:
    script, runs = fake_appwright(tmp_path)
    job = cli.submit("tests/long-sleep60.spec.ts")[0]
    with agent(server.api_url, script, tmp_path / "a.log"):
        wait_for(lambda: _runs(runs), what="the test to start")
        pid = int(_runs(runs)[0].split(" pid=")[1].split()[0])
        cancelled_at = time.monotonic()
        assert cli.run("cancel", "--job-id", job["id"]).returncode == 0
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=15, what="the test process to go")
        stopped_after = time.monotonic() - cancelled_at
        # The agent reports the stopped run and closes its group: it is back, waiting for work.
        with httpx.Client(base_url=server.api_url, timeout=10) as http:
            wait_for(lambda: parked_now(http, waiters=1), timeout=15, what="the agent waiting for work again")
    shown = _job(cli, job["id"])
    assert shown["status"] == "cancelled"
    assert [a["outcome"] for a in shown["attempt_history"]] == ["cancelled"]
    assert stopped_after < 5, f"the test ran on for {stopped_after:.1f}s after the cancel"


def _running(script: Path, name: str) -> list[int]:
    """Live processes of `script` whose command line names `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and str(script) in cmdline and name in cmdline and not _zombie(int(entry.name)):
            found.append(int(entry.name))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_server_killed_during_submissions_loses_none_it_acknowledged(db_url: str, tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log", database_url=db_url).start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submitter(n: int) -> None:
        with httpx.Client(base_url=server.api_url, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"org_id": "acme", "app_version_id": f"v{n}", "test_path": f"t{i}.spec.ts"}
                try:
                    response = http.post("/jobs", json=body)
                except httpx.HTTPError:
                    continue
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(response.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for n in range(8):
            pool.submit(submitter, n)
        wait_for(lambda: len(acknowledged) > 100, what="submissions acknowledged")
        server.stop(signal.SIGKILL)
        time.sleep(0.5)  # the scenario: the submitters keep at it, against a dead server, for a while
        stop.set()
    assert len(acknowledged) > 50
    restarted = Server(tmp_path / "server.log", database_url=db_url).start()
    try:
        with httpx.Client(base_url=restarted.api_url, timeout=30) as http:
            found = http.post("/jobs/wait", json={"jobs": dict.fromkeys(acknowledged), "timeout": 0})
        assert found.status_code == 200, found.text
        assert len(found.json()["jobs"]) == len(acknowledged)
    finally:
        restarted.stop()


def test_two_servers_and_four_agents_run_each_job_exactly_once(db_url: str, tmp_path: Path) -> None:
    # No splitting (ten unknown tests count 300 s, and idle agents would share them): each version is one group
    # here, installed once. Splitting has its own tests (tests/integration/test_ranking.py).
    no_split = {"QUALGENT_MIN_CHUNK_SECONDS": "100000"}
    servers = [Server(tmp_path / f"server{i}.log", database_url=db_url, env=no_split).start() for i in range(2)]
    script, runs = fake_appwright(tmp_path)
    try:
        cli = Cli(servers[0].api_url)
        ids = []
        for version in range(30):
            tests = [f"tests/t{i}.spec.ts" for i in range(10)]
            ids += [job["id"] for job in cli.submit(*tests, app=f"v{version}")]
        agents = [agent(servers[i % 2].api_url, script, tmp_path / f"agent{i}.log", "--name", f"a{i}")
                  for i in range(4)]  # fmt: skip
        for started in agents:
            started.__enter__()
        try:
            done = cli.run("wait", *[a for i in ids for a in ("--job-id", i)], "--timeout", "240", "--json",
                           timeout=300)  # fmt: skip
        finally:
            for started in agents:
                started.__exit__(None, None, None)
    finally:
        for server in servers:
            server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    ran = [line.rsplit("job=", 1)[1] for line in _runs(runs) if line.startswith("run ")]
    assert len(ran) == len(ids) == 300
    assert sorted(ran) == sorted(ids), "a job ran twice, or not at all"
    installs = [line for line in _runs(runs) if line.startswith("install ")]
    assert len(installs) == 30, "each app version is installed once"


def test_agents_and_waiting_clis_ride_out_a_postgresql_restart(tmp_path: Path) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="qg-restart-"))
    database = EmbeddedPostgres(data_dir)
    url = database.start()
    migrate.upgrade(url)
    server = Server(tmp_path / "server.log", database_url=url).start()
    script, runs = fake_appwright(tmp_path)
    cli = Cli(server.api_url)
    try:
        jobs = cli.submit("tests/a-sleep1.spec.ts", "tests/b-sleep1.spec.ts", "tests/c-fail.spec.ts")
        waiting = subprocess.Popen(
            [QGJOB, "wait", *[a for j in jobs for a in ("--job-id", j["id"])], "--timeout", "120", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(QGJOB_API_URL=server.api_url),
        )  # fmt: skip
        with agent(server.api_url, script, tmp_path / "agent.log"):
            wait_for(lambda: _runs(runs), what="the first test")
            database.stop()  # this process is its only registered user: it really stops
            time.sleep(2)  # the scenario: PostgreSQL stays down a while (the agent and the waiting CLI retry)
            database.start()
            out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 1, err[-2000:]
        statuses = sorted(job["status"] for job in json.loads(out)["jobs"])
        assert statuses == ["completed", "completed", "failed"]
        health = httpx.get(f"{server.api_url}/health/detailed", timeout=10).json()
        assert health["database"]["reachable"] is True
    finally:
        server.stop()
        database.stop()
        os.system(f"rm -rf {data_dir}")  # noqa: S605 - our own temp dir
