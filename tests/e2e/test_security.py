"""Security as a user meets it, with real `qgjob` processes: tokens, a hostile test path, the CLI's
refusals and the server's safe defaults."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import QGJOB, Cli, Server, agent, clean_env, free_port, wait_for

pytestmark = pytest.mark.e2e

ADMIN = "e2e-admin-token"

ARGV_RECORDER = """\
#!{python}
# Records its exact argv, one JSON list per call, and passes.
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def secured(db_url: str, tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_ADMIN_TOKEN": ADMIN}).start()
    yield running
    running.stop()


def recorder(directory: Path) -> tuple[Path, Path]:
    log = directory / "argv.jsonl"
    script = directory / "record-argv"
    script.write_text(textwrap.dedent(ARGV_RECORDER.format(python=sys.executable, log=str(log))))
    script.chmod(0o755)
    return script, log


def make_token(server: Server, *args: str) -> str:
    done = Cli(server.api_url, env={"QGJOB_TOKEN": ADMIN}).run("token", "create", *args)
    assert done.returncode == 0, done.stderr
    assert "not shown again" in done.stderr
    return done.stdout.strip()


def test_a_hostile_test_path_runs_as_one_argument_and_no_shell_sees_it(secured: Server, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    paths = [
        f"a.spec.js; touch {pwned}",
        f"$(touch {pwned}-2).spec.js",
        f"`touch {pwned}-3`.spec.js",
        f"b.spec.js && touch {pwned}-4 | cat > {pwned}-5",
    ]
    submitter = Cli(
        secured.api_url, env={"QGJOB_TOKEN": make_token(secured, "--role", "submitter", "--org-id", "acme")}
    )
    agent_token = make_token(secured, "--role", "agent", "--name", "host-1")
    jobs = submitter.submit(*paths)
    script, argv_log = recorder(tmp_path)

    with agent(
        secured.api_url, script, tmp_path / "agent.log", "--max-groups", "1", env={"QGJOB_TOKEN": agent_token}
    ) as p:
        assert p.wait(60) == 0, (tmp_path / "agent.log").read_text()

    calls = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert calls[0] == ["install", "v1"]
    assert sorted(calls[1:]) == sorted(["run", "v1", path] for path in paths)
    assert not list(tmp_path.glob("pwned*")), "a shell ran part of a test path"
    for job in jobs:
        assert submitter.json("status", "--job-id", job["id"])["status"] == "completed"
    log = secured.log() + (tmp_path / "agent.log").read_text()
    assert ADMIN not in log
    assert agent_token not in log


def test_tokens_from_the_cli_keep_each_org_to_its_own_jobs_and_agents_to_agent_work(
    secured: Server, tmp_path: Path
) -> None:
    admin = Cli(secured.api_url, env={"QGJOB_TOKEN": ADMIN})
    alpha = Cli(secured.api_url, env={"QGJOB_TOKEN": make_token(secured, "--role", "submitter", "--org-id", "alpha")})
    beta_token = make_token(secured, "--role", "submitter", "--org-id", "beta")
    beta = Cli(secured.api_url, env={"QGJOB_TOKEN": beta_token})
    job = alpha.submit("a.spec.ts", org_id="alpha")[0]

    assert beta.json("list") == []
    for args in (["status", "--job-id", job["id"]], ["cancel", "--job-id", job["id"]]):
        refused = beta.run(*args)
        assert refused.returncode == 2
        assert "404" in refused.stderr
    refused = beta.run("submit", "--org-id", "alpha", "--app-version-id", "v1", "--test", "x.ts")
    assert refused.returncode == 2
    assert "403" in refused.stderr
    assert "org_id" in refused.stderr
    assert alpha.json("status", "--job-id", job["id"])["status"] == "pending"

    anonymous = Cli(secured.api_url).run("list")
    assert anonymous.returncode == 2
    assert "401" in anonymous.stderr
    assert "QGJOB_TOKEN" in anonymous.stderr

    script, _ = recorder(tmp_path)
    with agent(secured.api_url, script, tmp_path / "agent.log", env={"QGJOB_TOKEN": beta_token}) as p:
        assert p.wait(30) == 2
    assert "refused this agent" in (tmp_path / "agent.log").read_text()

    tokens = admin.json("token", "list")
    assert sorted(t["org_id"] for t in tokens) == ["alpha", "beta"]
    beta_id = next(t["id"] for t in tokens if t["org_id"] == "beta")
    assert admin.run("token", "revoke", "--token-id", beta_id).returncode == 0
    assert beta.run("list").returncode == 2
    assert admin.run("org", "set-tier", "--org-id", "alpha", "--tier", "premium").returncode == 0
    assert {o["id"]: o["tier"] for o in admin.json("org", "list")}["alpha"] == "premium"
    assert alpha.run("org", "list").returncode == 2


QGJOB_SUBMIT = ["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ([*QGJOB_SUBMIT, "--priority", "urgent"], "priority"),
        (["submit", "--org-id", "a" * 10_000, "--app-version-id", "v1", "--test", "a.ts"], "--org-id"),
        (["submit", "--org-id", "acme", "--app-version-id", "v\x01", "--test", "a.ts"], "--app-version-id"),
        (["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "-rf"], "--test"),
        (["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts\n"], "--test"),
        ([*QGJOB_SUBMIT, "--idempotency-key", "a b"], "--idempotency-key"),
        (["list", "--org-id", "x\x1b[31m"], "--org-id"),
        (["list", "--token", "two words"], "--token"),
        (["token", "create", "--role", "submitter"], "--org-id"),
        (["token", "create", "--role", "agent", "--org-id", "acme"], "--org-id"),
        (["token", "create", "--role", "admin"], "--role"),
        (["token", "revoke", "--token-id", "nope"], "--token-id"),
        (["org", "set-tier", "--org-id", "acme", "--tier", "gold"], "--tier"),
        (["org", "set-tier", "--org-id", "", "--tier", "premium"], "--org-id"),
        (["submit", "--org-id", "acme", "--app-version-id", "--help", "--test", "a.ts"], "--app-version-id"),
        (["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a\u2028.ts"], "--test"),
        (["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a\u202e.ts"], "--test"),
        (["submit", "--org-id", "ac\u2066me", "--app-version-id", "v1", "--test", "a.ts"], "--org-id"),
        (["list", "--app-version-id", "-v1"], "--app-version-id"),
        (["report", "--org-id", "a\x85"], "--org-id"),
        (["token", "create", "--role", "submitter", "--org-id", "acme", "--name", "ci\u200f"], "--name"),
        (["agent", "--target", "emulator", "--run", "true", "--name", "-x"], "--name"),
    ],
)
def test_the_cli_refuses_bad_flags_with_exit_2_naming_the_flag(args: list[str], flag: str) -> None:
    """Refused before anything is sent: the API address given is one where nothing listens."""
    done = Cli(f"http://127.0.0.1:{free_port()}/api").run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert flag in done.stderr, done.stderr


def test_without_an_admin_token_the_server_serves_loopback_only_and_says_so(tmp_path: Path, db_url: str) -> None:
    refused = subprocess.run(
        [QGJOB, "server", "--host", "0.0.0.0", "--port", str(free_port()), "--database-url", db_url],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert refused.returncode == 2
    assert "QUALGENT_ADMIN_TOKEN" in refused.stderr
    assert "--insecure" in refused.stderr

    local = Server(tmp_path / "server.log", database_url=db_url).start()
    try:
        wait_for(lambda: "authentication OFF" in local.log(), what="the start-up warning")
        assert "127.0.0.1" in local.log()
    finally:
        local.stop()


def test_a_port_in_use_or_an_address_not_ours_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # bound before the embedded PostgreSQL: nothing is started (no data dir made) and nothing is left to shut down
    data_dir = tmp_path / "pg"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = subprocess.run(
            [QGJOB, "server", "--port", str(port), "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
    assert in_use.returncode == 3, in_use.stderr
    assert "address already in use" in in_use.stderr
    assert f"127.0.0.1:{port}" in in_use.stderr
    assert "--port" in in_use.stderr
    not_ours = subprocess.run(
        [QGJOB, "server", "--host", "192.0.2.1", "--insecure", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(QUALGENT_DATA_DIR=str(data_dir)),
    )
    assert not_ours.returncode == 2, not_ours.stderr
    assert "192.0.2.1" in not_ours.stderr
    assert "--host" in not_ours.stderr
    assert not data_dir.exists()
