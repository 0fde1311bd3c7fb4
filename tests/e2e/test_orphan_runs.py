"""Every run that started leaves an attempt (issue 20, finding 6), with real processes: the server is killed -9 just
as an agent starts a test (the start not on record yet), comes back after the claim's lease lapsed and the group is
handed back, and the job runs again; both runs are in its history. The server runs with 3 s leases."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Server, agent, fake_appwright, wait_for

pytestmark = pytest.mark.e2e

LEASE = 3.0


def _job(server: Server, job_id: str) -> dict[str, object]:
    return httpx.get(f"{server.api_url}/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def test_a_run_started_as_the_server_was_killed_is_on_record(db_url: str, tmp_path: Path) -> None:
    env = {"QUALGENT_LEASE_SECONDS": str(LEASE)}
    server = Server(tmp_path / "server.log", database_url=db_url, env=env).start()
    script, runs = fake_appwright(tmp_path)
    # The group's install kills the server (once): the test then starts while no server can hear of it.
    armed = tmp_path / "armed"
    armed.write_text("x")
    assert server.process is not None
    killer = tmp_path / "install-kills-server"
    killer.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            if [ -e {armed} ]; then rm {armed}; kill -9 {server.process.pid}; fi
            exit 0
            """)
    )
    killer.chmod(0o755)
    body = {"org_id": "acme", "app_version_id": "v1", "test_path": "tests/pay-sleep1.spec.ts"}
    job = httpx.post(f"{server.api_url}/jobs", json=body, timeout=10).json()
    agent_log = tmp_path / "agent.log"
    restarted = Server(tmp_path / "server2.log", database_url=db_url, env=env, port=server.port)
    try:
        with agent(
            server.api_url, script, agent_log, "--name", "witness", "--install", f"{killer} {{app_version_id}}"
        ) as a:
            wait_for(lambda: server.process is not None and server.process.poll() is not None, what="the kill")
            killed_at = time.monotonic()
            wait_for(lambda: runs.exists() and "pay-sleep1" in runs.read_text(), what="the test to start")
            a.send_signal(signal.SIGSTOP)  # it holds the run's start and result until the server is back
            try:
                time.sleep(max(0.0, killed_at + LEASE + 0.5 - time.monotonic()))  # the claim's lease lapses
                restarted.start()
                wait_for(lambda: _job(restarted, job["id"])["group_id"] != job["group_id"], what="the rescue")
            finally:
                a.send_signal(signal.SIGCONT)
            done = wait_for(lambda: (j := _job(restarted, job["id"]))["status"] == "completed" and j, timeout=60)
        ran = [line for line in runs.read_text().splitlines() if line.startswith("run ")]
        history = done["attempt_history"]  # type: ignore[index]
        assert len(ran) == 2, ran  # at least once: it ran again, as its first run was not known in time
        assert len(history) == len(ran), history  # and every run is on record
        assert history[0]["agent_id"] == history[1]["agent_id"]  # (the same agent ran it again)
        assert done["attempts"] == 2
        assert "is recorded" in restarted.log()
    finally:
        if restarted.process is not None:
            restarted.stop()
