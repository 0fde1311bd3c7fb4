"""An agent starts no test once its lease may have lapsed, by its own clock (issue 20, finding 5): a real `qgjob
agent` frozen with SIGSTOP past its lease, while another agent takes its group over and finishes it, starts nothing
of that group when it is let go on (SIGCONT). The server runs with 3 s leases."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Cli, Server, agent, fake_appwright, wait_for

pytestmark = pytest.mark.e2e


def _status(server: Server, job_id: str) -> str:
    return str(httpx.get(f"{server.api_url}/jobs/{job_id}", timeout=10).json()["status"])


def test_a_frozen_agent_woken_past_its_lease_starts_no_test(server: Server, cli: Cli, tmp_path: Path) -> None:
    script, runs = fake_appwright(tmp_path)
    # One group, run in this order (submitted apart: jobs of one submit are ordered by id)
    first, second = cli.submit("tests/first-sleep4.spec.ts")[0], cli.submit("tests/second.spec.ts")[0]
    frozen_log = tmp_path / "frozen.log"
    with agent(server.api_url, script, frozen_log, "--name", "frozen") as frozen:
        wait_for(lambda: _status(server, first["id"]) == "running", what="the first test to be running")
        frozen.send_signal(signal.SIGSTOP)
        try:
            # Its lease lapses, the server hands the group back, and another agent runs both jobs.
            with agent(server.api_url, script, tmp_path / "taker.log", "--name", "taker"):
                wait_for(
                    lambda: {_status(server, first["id"]), _status(server, second["id"])} == {"completed"},
                    timeout=60,
                    what="the taker to finish the group",
                )
        finally:
            frozen.send_signal(signal.SIGCONT)
        # Its first test ended while it was frozen; the second is next in its (lost) group.
        wait_for(
            lambda: "starting no new test" in frozen_log.read_text() or "lost the claim" in frozen_log.read_text(),
            timeout=30,
            what="the woken agent to find its claim lost",
        )
    log = frozen_log.read_text()
    assert f"running job {first['id']}" in log
    assert f"running job {second['id']}" not in log, log
    assert sum("second.spec" in line for line in runs.read_text().splitlines()) == 1  # the taker's run only
