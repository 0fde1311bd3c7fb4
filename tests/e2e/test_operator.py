"""Issue 21: what a new user hit in a first afternoon, in CI and as an operator, checked through the real CLI,
server and agent processes: exit codes, output, files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import QGJOB, Cli, Server, agent, clean_env, fake_appwright, free_port, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _popen(cli: Cli, *args: str, stderr: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    with stderr.open("w") as err:
        return subprocess.Popen(
            [QGJOB, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=clean_env(QGJOB_API_URL=cli.api_url, **(env or {})),
        )


# -- 1. Ctrl-C ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sent", "code"),
    [("wait", signal.SIGINT, 130), ("submit --wait", signal.SIGINT, 130), ("wait", signal.SIGTERM, 143)],
)
def test_ctrl_c_exits_130_writes_the_junit_and_says_the_jobs_keep_running(
    cli: Cli, tmp_path: Path, command: str, sent: signal.Signals, code: int
) -> None:
    """Ctrl-C, or SIGTERM (a CI runner cancelling a step sends SIGINT, then SIGTERM), ends the wait, not the jobs."""
    junit = tmp_path / "junit.xml"
    stderr = tmp_path / "stderr.txt"
    if command == "wait":
        job = cli.submit("tests/a.spec.ts", target="device")[0]  # no agent serves devices: it stays pending
        args = ["wait", "--job-id", job["id"]]
    else:
        args = ["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "tests/a.spec.ts", "--target",
                "device", "--wait"]  # fmt: skip
    waiting = _popen(cli, *args, "--junit", str(junit), stderr=stderr)
    try:
        wait_for(lambda: "pending" in stderr.read_text(), what="the first progress line")
        waiting.send_signal(sent)
        waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    said = stderr.read_text()
    assert waiting.returncode == code, said
    assert "keep running" in said
    assert "qgjob cancel" in said
    assert "Aborted" not in said
    case = ET.parse(junit).getroot().find(".//testcase")  # noqa: S314 - our own file
    assert case is not None
    assert case.get("name") == "tests/a.spec.ts"
    error = case.find("error")
    assert error is not None
    assert error.get("type") == "Interrupted"
    assert [job["status"] for job in cli.json("list")] == ["pending"], "the interrupt must not cancel the job"


# -- 2. a server never reached, and one that restarts ---------------------------------------------------------


def test_a_server_never_reached_exits_3_after_the_connect_timeout(tmp_path: Path) -> None:
    cli = Cli(f"http://127.0.0.1:{free_port()}/api")
    started = time.monotonic()
    done = cli.run("wait", "--job-id", str(uuid.uuid4()), "--connect-timeout", "1.5", timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "--connect-timeout" in done.stderr
    assert 1.4 < took < 30
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts", "--wait",
                   "--idempotency-key", "k1", "--connect-timeout", "1", "--json", timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "error" in json.loads(done.stdout)


def test_a_server_reached_once_is_waited_for_beyond_the_connect_timeout(db_url: str, tmp_path: Path) -> None:
    first = Server(tmp_path / "server.log", database_url=db_url).start()
    cli = Cli(first.api_url)
    job = cli.submit("tests/a-fail.spec.ts")[0]
    stderr = tmp_path / "stderr.txt"
    waiting = _popen(cli, "wait", "--job-id", job["id"], "--timeout", "90", "--connect-timeout", "0.5", "--json",
                     stderr=stderr)  # fmt: skip
    second: Server | None = None
    try:
        wait_for(lambda: "pending" in stderr.read_text(), what="the first progress line")
        first.stop(signal.SIGKILL)
        wait_for(lambda: "server unreachable" in stderr.read_text(), what="the CLI to notice")
        time.sleep(1.5)  # three connect timeouts without a server: a restart, not a wrong address
        assert waiting.poll() is None, stderr.read_text()
        second = Server(tmp_path / "server.log", database_url=db_url, port=first.port).start()
        script, _ = fake_appwright(tmp_path)
        with agent(second.api_url, script, tmp_path / "agent.log"):
            out, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
        if second is not None:
            second.stop()
    assert waiting.returncode == 1, stderr.read_text()
    assert json.loads(out)["jobs"][0]["status"] == "failed"


# -- 3. no online agent for a target --------------------------------------------------------------------------


@pytest.fixture
def steady_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose lease (15 s) an idle agent beating every 5 s cannot miss on a loaded machine: the e2e
    server's 3 s lease shows an agent offline after a 3 s stall, and these tests are about targets, not stalls."""
    running = Server(tmp_path / "steady.log", database_url=db_url, env={"QUALGENT_LEASE_SECONDS": "15"}).start()
    try:
        yield running
    finally:
        running.stop()


def test_waiting_on_a_target_no_agent_serves_says_so_and_can_fail_fast(steady_server: Server, tmp_path: Path) -> None:
    server, cli = steady_server, Cli(steady_server.api_url)
    summary = tmp_path / "summary.md"
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    job = cli.submit("tests/a.spec.ts", target="device")[0]
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log", "--target", "emulator"):
        wait_for(lambda: _agents(server), what="the emulator agent")
        done = Cli(server.api_url, env=github).run("wait", "--job-id", job["id"], "--timeout", "2")
        assert done.returncode == 4, done.stderr
        assert "no online agent serves target device" in done.stderr
        assert "no online agent serves target device" in summary.read_text()

        started = time.monotonic()
        done = cli.run("wait", "--job-id", job["id"], "--fail-if-no-agent", "--junit", str(tmp_path / "j.xml"))
        assert done.returncode == 3, done.stderr
        assert time.monotonic() - started < 20
        assert "no online agent serves target device" in done.stderr
        assert "--fail-if-no-agent" in done.stderr
        error = ET.parse(tmp_path / "j.xml").getroot().find(".//error")  # noqa: S314 - our own file
        assert error is not None
        assert error.get("type") == "NoAgent"

        served = cli.run("submit", "--org-id", "acme", "--app-version-id", "v2", "--test", "tests/b.spec.ts",
                         "--wait", "--fail-if-no-agent", "--timeout", "60")  # fmt: skip
        assert served.returncode == 0, served.stderr
        assert "no online agent" not in served.stderr


def _agents(server: Server, **params: Any) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.api_url}/agents", params=params, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


# -- 4. an infrastructure error's cause -----------------------------------------------------------------------


def test_an_infrastructure_errors_cause_is_in_progress_junit_annotation_and_agent_log(
    server: Server, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    cli = Cli(server.api_url, env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    agent_log = tmp_path / "agent.log"
    args = [QGJOB, "agent", "--install", "true", "--run", "npx-typo test {test_path}", "--idle-poll-max", "0.2"]
    with agent_log.open("ab") as log:
        running = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=clean_env(QGJOB_API_URL=server.api_url)
        )
    try:
        done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "tests/a.spec.ts",
                       "--max-attempts", "1", "--wait", "--timeout", "60", "--junit", str(junit))  # fmt: skip
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(20)
    cause = "cannot start 'npx-typo': No such file or directory"
    assert done.returncode == 3, done.stderr
    assert cause in done.stderr  # the progress line
    assert any(line.startswith("::error") and cause in line for line in done.stdout.splitlines()), done.stdout
    error = ET.parse(junit).getroot().find(".//error")  # noqa: S314 - our own file
    assert error is not None
    assert cause in (error.get("message") or "")
    assert re.search(r"WARNING .*infrastructure error: " + re.escape(cause), agent_log.read_text())
    job_id = Cli(server.api_url).json("list")[0]["id"]
    shown = Cli(server.api_url).run("status", "--job-id", job_id)
    assert re.search(r"exit code\s+-\s*$", shown.stdout, re.MULTILINE), shown.stdout
    assert "None" not in shown.stdout


# -- 5. tokens on a server that checks none -------------------------------------------------------------------


def test_token_create_says_plainly_that_a_server_without_an_admin_token_enforces_nothing(cli: Cli) -> None:
    done = cli.run("token", "create", "--role", "agent", "--name", "lab-1")
    assert done.returncode == 0, done.stderr
    assert "no admin token" in done.stderr
    assert "restricts nothing" in done.stderr
    made = cli.json("token", "create", "--role", "agent")
    assert made["enforced"] is False


# -- 6. org ids -----------------------------------------------------------------------------------------------


def test_unknown_orgs_are_refused_when_auto_create_is_off_and_look_alikes_are_warned_of(
    db_url: str, tmp_path: Path
) -> None:
    server = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_AUTO_CREATE_ORGS": "false"}).start()
    try:
        cli = Cli(server.api_url)
        refused = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts")
        assert refused.returncode == 2, refused.stderr
        assert "unknown org 'acme'" in refused.stderr
        assert cli.run("org", "set-tier", "--org-id", "acme", "--tier", "standard").returncode == 0
        assert cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts").returncode == 0
        typo = cli.run("submit", "--org-id", "ACME", "--app-version-id", "v1", "--test", "a.ts", "--json")
        assert typo.returncode == 2
        assert "did you mean 'acme'" in json.loads(typo.stdout)["error"]
        assert len(cli.json("list")) == 1
    finally:
        server.stop()


def test_a_new_org_that_differs_from_another_only_by_case_or_spaces_is_warned_of(server: Server, cli: Cli) -> None:
    cli.submit("a.ts", org_id="acme")
    for typo in ("ACME", "acme "):
        done = cli.run("submit", "--org-id", typo, "--app-version-id", "v1", "--test", "a.ts")
        assert done.returncode == 0, done.stderr
        assert "warning" in done.stderr
        assert "only by case or whitespace" in done.stderr
        assert "'acme'" in done.stderr
    assert "only by case or whitespace" in server.log()
    quiet = cli.run("submit", "--org-id", "globex", "--app-version-id", "v1", "--test", "a.ts")
    assert "warning" not in quiet.stderr


# -- 7. a killed agent's test process tree --------------------------------------------------------------------

TREE_TEST = """\
#!/bin/sh
# A test that starts a child of its own (as npx starts node, which starts Appium), then runs long.
sleep 300 &
echo "$$ $!" > {pids}
sleep 300
"""


def test_a_killed_agents_test_process_tree_dies_with_it(server: Server, cli: Cli, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    script = tmp_path / "tree-test.sh"
    script.write_text(TREE_TEST.format(pids=pids_file))
    script.chmod(0o755)
    agent_log = tmp_path / "agent.log"
    args = [QGJOB, "agent", "--install", "true", "--run", f"{script} {{test_path}}", "--idle-poll-max", "0.2"]
    with agent_log.open("ab") as log:
        running = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=clean_env(QGJOB_API_URL=server.api_url)
        )
    try:
        cli.submit("tests/long.spec.ts")
        pids = wait_for(lambda: pids_file.exists() and pids_file.read_text().split(), what="the test and its child")
        test_pid, child_pid = (int(p) for p in pids)
        assert _alive(test_pid)
        assert _alive(child_pid)
        running.kill()  # SIGKILL: no cleanup in the agent
        running.wait(10)
        wait_for(lambda: not _alive(test_pid) and not _alive(child_pid), timeout=15, what="the tree to die")
    finally:
        if running.poll() is None:
            running.kill()
        for pid in (int(p) for p in (pids_file.read_text().split() if pids_file.exists() else [])):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- 8. agents that died or left ------------------------------------------------------------------------------


def test_a_killed_agent_is_offline_within_a_lease_and_a_deregistered_one_leaves_the_views(
    db_url: str, tmp_path: Path
) -> None:
    lease = 6.0
    server = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_LEASE_SECONDS": str(lease)}).start()
    script, _ = fake_appwright(tmp_path)
    try:
        with agent(server.api_url, script, tmp_path / "a.log", "--name", "killed") as killed:
            wait_for(lambda: [a for a in _agents(server) if a["name"] == "killed" and a["status"] == "idle"])
            killed.kill()
            killed.wait(10)
            gone = time.monotonic()
            wait_for(lambda: _agents(server)[0]["status"] == "offline", timeout=3 * lease, interval=0.2,
                     what="the killed agent shown offline")  # fmt: skip
            # Silent for a lease after its last beat (beats come every third of a lease): never three leases.
            assert time.monotonic() - gone < lease + 3, "a killed agent stayed idle beyond a lease"
        with agent(server.api_url, script, tmp_path / "b.log", "--name", "leaving") as leaving:
            wait_for(lambda: [a for a in _agents(server) if a["name"] == "leaving"])
            leaving.send_signal(signal.SIGTERM)
            assert leaving.wait(20) == 0
        assert [a["name"] for a in _agents(server)] == ["killed"]
        everyone = {a["name"]: a for a in _agents(server, include_deregistered="true")}
        assert set(everyone) == {"killed", "leaving"}
        assert everyone["leaving"]["deregistered_at"] is not None
        assert everyone["killed"]["deregistered_at"] is None
        detailed = httpx.get(f"{server.api_url}/health/detailed", timeout=10).json()
        assert detailed["agents"] == {"idle": 0, "busy": 0, "offline": 1}
        top = Cli(server.api_url).run("top", "--once")
        assert top.returncode == 0, top.stderr
        assert "killed" in top.stdout
        assert "leaving" not in top.stdout
    finally:
        server.stop()


# -- 9. the API docs page, offline ----------------------------------------------------------------------------


def test_the_api_docs_page_loads_nothing_from_another_host(server: Server) -> None:
    page = httpx.get(f"http://127.0.0.1:{server.port}/api/schema", timeout=10, follow_redirects=True)
    assert page.status_code == 200
    assert "Redoc.init" in page.text
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page.text)
    assert references, page.text[:500]
    external = [ref for ref in references if re.match(r"^(?:[a-z]+:)?//", ref)]
    assert external == [], external
    assert "googleapis" not in page.text
    for ref in references:
        if ref.startswith("/"):
            asset = httpx.get(f"http://127.0.0.1:{server.port}{ref}", timeout=10)
            assert asset.status_code == 200, ref
            assert "javascript" in asset.headers["content-type"]
            assert "cdn.redoc.ly" not in asset.text
    document = httpx.get(f"http://127.0.0.1:{server.port}/api/schema/openapi.json", timeout=10)
    assert document.status_code == 200
    assert "/api/jobs" in document.json()["paths"]
    assert "/api/schema/openapi.json" in (ROOT / "README.md").read_text()


# -- 10. display ----------------------------------------------------------------------------------------------


def test_a_final_failure_says_final_and_list_shows_group_and_exit_code(
    server: Server, cli: Cli, tmp_path: Path
) -> None:
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "tests/a.spec.ts",
                       "--test", "tests/b-fail.spec.ts", "--wait", "--timeout", "60")  # fmt: skip
    assert done.returncode == 1, done.stderr
    jobs = {job["test_path"]: job for job in cli.json("list")}
    failed = jobs["tests/b-fail.spec.ts"]
    shown = cli.run("status", "--job-id", failed["id"])
    assert re.search(r"attempts\s+1/3 \(final\)", shown.stdout), shown.stdout
    assert re.search(r"exit code\s+1\b", shown.stdout)
    listed = cli.run("list").stdout
    header = next(line for line in listed.splitlines() if "job id" in line)
    assert "group" in header
    assert "exit" in header
    row = next(line for line in listed.splitlines() if failed["id"] in line)
    assert failed["group_id"][:8] in row
    assert "1/3 (final)" in row
    passed_row = next(line for line in listed.splitlines() if jobs["tests/a.spec.ts"]["id"] in line)
    assert "(final)" not in passed_row


def test_an_idempotent_resubmit_says_nothing_new_was_queued(cli: Cli) -> None:
    args = ["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts", "--test", "b.ts",
            "--idempotency-key", "build-7"]  # fmt: skip
    first = cli.run(*args)
    assert "Queued 2 job(s)" in first.stdout
    again = cli.run(*args)
    assert again.returncode == 0
    assert "already queued" in again.stdout.lower()
    assert "nothing new" in again.stdout
    quiet = cli.run(*args, "--json")
    assert len(json.loads(quiet.stdout)) == 2
    assert "already queued" in quiet.stderr
    replay = cli.run(*args, "--wait", "--timeout", "0.5", "--json")
    assert json.loads(replay.stdout)["replayed"] is True


def test_choices_in_any_case_the_api_prefix_hint_help_width_and_json_errors(server: Server, cli: Cli) -> None:
    job = cli.json("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts", "--priority", "HIGH",
                   "--target", "Emulator")[0]  # fmt: skip
    assert (job["priority"], job["target"]) == ("high", "emulator")
    assert cli.json("list", "--status", "PENDING")[0]["id"] == job["id"]

    bare = Cli(f"http://127.0.0.1:{server.port}/").run("status", "--job-id", job["id"])
    assert bare.returncode == 2
    assert f"--api-url http://127.0.0.1:{server.port}/api" in bare.stderr

    for command in (["--help"], ["submit", "--help"], ["wait", "--help"]):
        shown = cli.run(*command)
        assert shown.returncode == 0
        assert max(len(line) for line in shown.stdout.splitlines()) <= 100, command

    bad_priority = ["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts", "--priority", "urgent"]
    for args in (["status", "--job-id", "nope"], ["status", "--job-id", str(uuid.uuid4())], bad_priority):
        done = cli.run(*args, "--json")
        assert done.returncode == 2, args
        error = json.loads(done.stdout)
        assert set(error) == {"error", "exit_code"}
        assert error["exit_code"] == 2
        assert done.stderr.strip(), "the message still goes to stderr"


def test_a_page_that_is_not_the_api_exits_2_with_the_prefix_hint(tmp_path: Path) -> None:
    """What a web page at the root (a dashboard's /jobs) answers an --api-url without /api: not JSON."""
    (tmp_path / "jobs").write_text("<html><body>a dashboard</body></html>")
    port = free_port()
    pages = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/jobs"), what="the page server")
        done = Cli(f"http://127.0.0.1:{port}").run("list", "--json")
    finally:
        pages.terminate()
        pages.wait(10)
    assert done.returncode == 2, done.stderr
    assert "not the API's JSON" in done.stderr
    assert f"--api-url http://127.0.0.1:{port}/api" in json.loads(done.stdout)["error"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- 11. submission order and the README ----------------------------------------------------------------------


def test_a_groups_tests_run_in_submission_order(server: Server, cli: Cli, tmp_path: Path) -> None:
    order = ["tests/e.spec.ts", "tests/a.spec.ts", "tests/d.spec.ts", "tests/b.spec.ts", "tests/f.spec.ts",
             "tests/c.spec.ts"]  # fmt: skip
    cli.submit(*order)
    cli.submit("tests/later-1.spec.ts", "tests/later-0.spec.ts")
    script, runs = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        wait_for(lambda: runs.exists() and runs.read_text().count("\nrun ") == 8, what="the eight runs")
    ran = [line.split()[2] for line in runs.read_text().splitlines() if line.startswith("run ")]
    assert ran == [*order, "tests/later-1.spec.ts", "tests/later-0.spec.ts"]


def test_the_readme_walkthrough_matches_what_list_shows_and_pipx_runs_from_the_clone() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pipx run --spec ./qualgent" not in readme
    assert "pipx run --spec . qgjob" in readme
    walkthrough = readme[readme.index("## Five minutes") : readme.index("## Running real AppWright")]
    comments = [line.split("#", 1)[1] for line in walkthrough.splitlines() if line.startswith("qgjob list")]
    assert any("group" in comment for comment in comments), comments
    assert any("exit 1" in comment for comment in comments), comments
