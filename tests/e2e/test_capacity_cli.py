"""Caps and queue estimates from the command line, against a real server."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Cli

pytestmark = pytest.mark.e2e


def test_target_and_org_caps_are_set_and_listed(cli: Cli) -> None:
    capped = cli.json("target", "set", "--target", "browserstack", "--max-running", "5")
    assert (capped["target"], capped["max_running"]) == ("browserstack", 5)
    listed = {t["target"]: t for t in cli.json("target", "list")}
    assert listed["browserstack"]["max_running"] == 5
    assert listed["emulator"]["max_running"] is None
    shown = cli.run("target", "list")
    assert "at most 5 running" in shown.stdout, shown.stdout
    assert cli.json("target", "set", "--target", "browserstack", "--max-running", "none")["max_running"] is None

    org = cli.json("org", "set-tier", "--org-id", "acme", "--max-running", "2")
    assert (org["tier"], org["max_running"]) == ("standard", 2)
    org = cli.json("org", "set-tier", "--org-id", "acme", "--tier", "premium")
    assert (org["tier"], org["max_running"]) == ("premium", 2)  # the cap is kept
    assert cli.json("org", "set-tier", "--org-id", "acme", "--max-running", "none")["max_running"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["target", "set", "--target", "browserstack", "--max-running", "-1"],
        ["target", "set", "--target", "browserstack", "--max-running", "lots"],
        ["target", "set", "--target", "mainframe", "--max-running", "1"],
        ["org", "set-tier", "--org-id", "acme"],
    ],
)
def test_bad_caps_exit_2(cli: Cli, args: list[str]) -> None:
    done = cli.run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)


def test_wait_says_when_no_online_agent_serves_a_target(cli: Cli) -> None:
    job = cli.submit("tests/a.spec.ts", target="device")[0]
    assert cli.json("status", "--job-id", job["id"])["queue"] == {
        "groups_ahead": 0,
        "eta_seconds": None,
        "agents_online": 0,
    }
    done = cli.run("wait", "--job-id", job["id"], "--timeout", "1.5")
    assert done.returncode == 4, done.stderr
    assert "no online agent serves target device" in done.stderr, done.stderr
