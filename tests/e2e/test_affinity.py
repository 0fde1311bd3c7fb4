"""Build affinity with a real agent process: the build it holds goes first among equals, without an install."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Cli, Server, agent, fake_appwright, wait_for

pytestmark = pytest.mark.e2e


def _calls(runs: Path) -> list[str]:
    return [line.rsplit(" pid=", 1)[0] for line in runs.read_text().splitlines()] if runs.exists() else []


@pytest.mark.parametrize("always_install", [False, True])
def test_jobs_for_the_build_an_agent_holds_go_to_it_next_without_an_install(
    server: Server, cli: Cli, tmp_path: Path, always_install: bool
) -> None:
    cli.submit("tests/a-sleep2.spec.ts", app="v1")
    script, runs = fake_appwright(tmp_path)
    extra = ["--max-groups", "3", *(["--always-install"] if always_install else [])]
    with agent(server.api_url, script, tmp_path / "agent.log", *extra) as process:
        # While v1's group runs, a v2 group arrives, then more v1 jobs (a new group of v1, younger than v2's).
        wait_for(lambda: "run v1 tests/a-sleep2.spec.ts" in _calls(runs), what="v1 running")
        for version, test in (("v2", "tests/x.spec.ts"), ("v1", "tests/b.spec.ts")):  # within the 2 s test
            job = {"org_id": "acme", "app_version_id": version, "test_path": test}
            httpx.post(f"{server.api_url}/jobs", json=job).raise_for_status()
        assert process.wait(60) == 0, (tmp_path / "agent.log").read_text()

    reinstall = ["install v1"] if always_install else []
    assert _calls(runs) == [
        "install v1",
        "run v1 tests/a-sleep2.spec.ts",
        *reinstall,
        "run v1 tests/b.spec.ts",  # before the older v2 group: the device holds v1
        "install v2",
        "run v2 tests/x.spec.ts",
    ]
