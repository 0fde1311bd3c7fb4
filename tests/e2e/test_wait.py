"""CI's view: `qgjob submit --wait` / `qgjob wait` exit codes, JUnit, GitHub output, idempotency,
and surviving a server restart, with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.harness import Cli, Server, agent, fake_appwright

pytestmark = pytest.mark.e2e


def _submit_wait(cli: Cli, *tests: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = ["submit", "--org-id", "acme", "--app-version-id", "v1", "--wait", "--timeout", "60", *extra]
    for test in tests:
        args += ["--test", test]
    return cli.run(*args, timeout=90)


def test_submit_wait_exits_0_when_the_test_passed_and_1_when_it_failed(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        passed = _submit_wait(cli, "tests/ok.spec.ts")
        assert passed.returncode == 0, passed.stderr
        assert "1 passed" in passed.stdout
        failed = _submit_wait(cli, "tests/broken-fail.spec.ts")
        assert failed.returncode == 1, failed.stderr
        assert "1 failed" in failed.stdout


def test_infrastructure_errors_exit_3_after_the_retries(server: Server, cli: Cli, tmp_path: Path) -> None:
    script, runs = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        done = _submit_wait(cli, "tests/device-infra.spec.ts", extra=("--max-attempts", "2", "--json"))
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["infra_errors"] == 1
    assert report["jobs"][0]["attempts"] == 2
    assert sum("device-infra" in line for line in runs.read_text().splitlines()) == 2


def test_wait_on_a_job_no_agent_can_take_exits_4_at_its_timeout(cli: Cli) -> None:
    job = cli.submit("tests/a.spec.ts", target="device")[0]
    started = time.monotonic()
    done = cli.run("wait", "--job-id", job["id"], "--timeout", "1.5")
    assert done.returncode == 4, done.stderr
    assert 1.4 < time.monotonic() - started < 20


def test_wait_on_a_cancelled_job_exits_5(cli: Cli) -> None:
    job = cli.submit("tests/a.spec.ts")[0]
    assert cli.run("cancel", "--job-id", job["id"]).returncode == 0
    assert cli.run("wait", "--job-id", job["id"]).returncode == 5


def test_wait_writes_a_junit_file_with_the_one_failure(server: Server, cli: Cli, tmp_path: Path) -> None:
    jobs = cli.submit("tests/a.spec.ts", "tests/b-fail.spec.ts", "tests/c.spec.ts")
    script, _ = fake_appwright(tmp_path)
    junit = tmp_path / "reports" / "junit.xml"
    with agent(server.api_url, script, tmp_path / "agent.log"):
        done = cli.run("wait", *[arg for job in jobs for arg in ("--job-id", job["id"])], "--junit", str(junit))
    assert done.returncode == 1
    root = ET.parse(junit).getroot()  # noqa: S314 - our own file
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "0")
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"tests/a.spec.ts", "tests/b-fail.spec.ts", "tests/c.spec.ts"}
    failure = cases["tests/b-fail.spec.ts"].find("failure")
    assert failure is not None
    assert jobs[1]["id"] in (failure.get("message") or "")
    assert cases["tests/a.spec.ts"].find("failure") is None


def test_inside_github_actions_a_summary_annotations_and_a_derived_idempotency_key(
    server: Server, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "777", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "e2e",
           "GITHUB_REPOSITORY": "acme/app", "GITHUB_STEP_SUMMARY": str(summary)}  # fmt: skip
    cli = Cli(server.api_url, env=env)
    script, runs = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        first = _submit_wait(cli, "tests/a.spec.ts", "tests/b-fail.spec.ts")
        retried = _submit_wait(cli, "tests/a.spec.ts", "tests/b-fail.spec.ts")
    assert first.returncode == retried.returncode == 1
    assert "::error title=qualgent%3A tests/b-fail.spec.ts" in first.stdout or "::error title=qualgent: tests/b-fail" \
        in first.stdout  # fmt: skip
    assert "### qualgent: 2 test(s): 1 passed, 1 failed" in summary.read_text()
    assert sum("b-fail" in line for line in runs.read_text().splitlines()) == 1, "the retried step re-ran the tests"
    assert len(Cli(server.api_url).json("list")) == 2


def test_the_same_idempotency_key_gives_the_same_job_ids(cli: Cli) -> None:
    first = cli.submit("tests/a.spec.ts", idempotency_key="build-42")
    again = cli.submit("tests/a.spec.ts", idempotency_key="build-42")
    assert [j["id"] for j in first] == [j["id"] for j in again]
    assert len(cli.json("list")) == 1


def test_a_waiting_cli_survives_a_server_restart(db_url: str, tmp_path: Path) -> None:
    first = Server(tmp_path / "server.log", database_url=db_url).start()
    cli = Cli(first.api_url)
    job = cli.submit("tests/slow-fail.spec.ts")[0]
    waiting = subprocess.Popen(
        [*cli_args(cli), "wait", "--job-id", job["id"], "--timeout", "90", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(cli),
    )  # fmt: skip
    time.sleep(1)
    first.stop(signal.SIGKILL)
    time.sleep(2)
    second = _restart_on(first.port, db_url, tmp_path)
    script, _ = fake_appwright(tmp_path)
    try:
        with agent(second.api_url, script, tmp_path / "agent.log"):
            out, err = waiting.communicate(timeout=60)
    finally:
        second.stop()
    assert waiting.returncode == 1, err
    assert json.loads(out)["jobs"][0]["status"] == "failed"


def _restart_on(port: int, db_url: str, tmp_path: Path) -> Server:
    """The same address again: the waiting CLI knows only that one. Some other process may hold the
    port for a moment (it is in the ephemeral range), so try a few times."""
    for _ in range(10):
        try:
            return Server(tmp_path / "server.log", database_url=db_url, port=port).start()
        except AssertionError as err:
            if "address already in use" not in str(err):
                raise
            time.sleep(1)
    raise AssertionError(f"port {port} stayed busy")


def cli_args(cli: Cli) -> list[str]:
    from tests.e2e.harness import QGJOB

    return [QGJOB]


def cli_env(cli: Cli) -> dict[str, str]:
    from tests.e2e.harness import clean_env

    return clean_env(QGJOB_API_URL=cli.api_url)
