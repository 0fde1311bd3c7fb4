"""CI's view: `qgjob submit --wait` / `qgjob wait` exit codes, JUnit, GitHub output, idempotency,
and surviving a server restart, with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import psycopg
import pytest

from qualgent.server.api.app import POOL_SIZE
from qualgent.server.db.engine import libpq_url
from tests.e2e.harness import Cli, Server, agent, fake_appwright, wait_for
from tests.eventually import parked, parked_now

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
    with httpx.Client(base_url=first.api_url, timeout=10) as http:
        wait_for(lambda: parked_now(http, jobs=1), what="the CLI's long-poll parked on the server")
    first.stop(signal.SIGKILL)
    time.sleep(2)  # the scenario: no server for a while (the waiting CLI retries)
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


# -- 1,000 concurrent waiters on one server ------------------------------------------------------------------

WAITERS = 1000
POLLS_PER_CLIENT = 25  # httpx's pool scans all its connections per response: many small clients, as CI has


def test_a_thousand_waiters_on_one_server_get_their_final_state_on_a_bounded_pool(db_url: str, tmp_path: Path) -> None:
    """1,000 long-polls parked on one server (800 jobs: 200 of them watched twice) while a real agent runs
    20 of the jobs and the other 780 are cancelled over the API: every waiter answers with its job's final
    state, and the server's database connections stay within its pool (10 + 10 overflow) and its one
    LISTEN connection the whole time, far below one per waiter."""
    server = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_RATE_LIMIT": "0"}).start()
    try:
        asyncio.run(_thousand_waiters(server, db_url, tmp_path))
    finally:
        server.stop()


async def _thousand_waiters(server: Server, db_url: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(httpx.AsyncClient(base_url=server.api_url, timeout=60))
        pollers = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.api_url, timeout=90, limits=httpx.Limits(max_connections=25))
            )
            for _ in range(WAITERS // POLLS_PER_CLIENT)
        ]
        run_by_agent = [_job(f"tests/t{i}{'-fail' * (i % 2)}.spec.ts", "emulator") for i in range(20)]
        to_cancel = [_job(f"tests/c{i}.spec.ts", "device") for i in range(780)]  # no agent serves devices
        submitted = await api.post("/jobs", json=run_by_agent + to_cancel)
        assert submitted.status_code == 201, submitted.text
        jobs = [job["id"] for job in submitted.json()]
        watched = jobs + jobs[:200]  # the agent's 20 jobs and 180 to cancel have two waiters each
        assert len(watched) == WAITERS

        connections = _ConnectionCount(db_url)
        sampler = asyncio.create_task(connections.sample_until_cancelled())
        polls = [
            asyncio.create_task(pollers[i // POLLS_PER_CLIENT].get(f"/jobs/{job_id}/wait", params={"timeout": 60}))
            for i, job_id in enumerate(watched)
        ]
        await parked(api, waiters=WAITERS)
        assert not any(poll.done() for poll in polls), "a long-poll answered before its job was final"
        # The initial reads went through the server's one pool (qualgent.server.db.database); parked, the waiters hold
        # none of its connections, so what stays is at most the pool (idle) and the LISTEN connection.
        parked_connections = await connections.settled(at_most=POOL_SIZE + 1)

        script, _ = fake_appwright(tmp_path)
        stack.enter_context(agent(server.api_url, script, tmp_path / "agent.log", "--target", "emulator"))
        cancelling = asyncio.Semaphore(20)

        async def cancel(job_id: str) -> None:
            async with cancelling:
                assert (await api.delete(f"/jobs/{job_id}")).status_code == 200

        await asyncio.gather(*(cancel(job_id) for job_id in jobs[20:]))
        answers = await asyncio.wait_for(asyncio.gather(*polls), 60)
        sampler.cancel()

    assert [a.status_code for a in answers] == [200] * WAITERS
    got = [(a.json()["id"], a.json()["status"]) for a in answers]
    expected = [(job_id, _final(i % 800)) for i, job_id in enumerate(watched)]
    assert got == expected
    # The one pool and the LISTEN connection, at most, under the burst and parked: never one per waiter.
    assert 1 <= parked_connections <= POOL_SIZE + 1, f"{parked_connections} connections with the 1,000 waiters parked"
    assert connections.most <= POOL_SIZE + 1, connections.most


def _job(test_path: str, target: str) -> dict[str, str]:
    return {"org_id": "acme", "app_version_id": "v1", "test_path": test_path, "target": target}


def _final(index: int) -> str:
    if index >= 20:
        return "cancelled"
    return "failed" if index % 2 else "completed"


class _ConnectionCount:
    """Every connection to the test's database but this one's (the agent and CLI speak HTTP only, so the
    rest are the server's), sampled every 20 ms."""

    def __init__(self, db_url: str) -> None:
        self.conninfo = libpq_url(db_url)
        self.latest = 0
        self.most = 0

    async def settled(self, at_most: int, timeout: float = 5.0) -> int:
        for _ in range(int(timeout / 0.05)):
            if self.latest <= at_most:
                break
            await asyncio.sleep(0.05)
        return self.latest

    async def sample_until_cancelled(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            while True:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).fetchone()
                assert row is not None
                self.latest = int(row[0])
                self.most = max(self.most, self.latest)
                await asyncio.sleep(0.02)
