"""`--log-format json` (or QUALGENT_LOG_FORMAT=json): every line the server and the agent write is one JSON
object, and the agent's lines about a job name its agent, group and job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import Cli, Server, agent, fake_appwright

pytestmark = pytest.mark.e2e


def test_server_and_agent_log_json_lines_with_their_ids(db_url: str, tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log", database_url=db_url, env={"QUALGENT_LOG_FORMAT": "json"}).start()
    try:
        cli = Cli(server.api_url)
        (job,) = cli.submit("tests/a.spec.ts", org_id="acme", app="v7")
        script, _ = fake_appwright(tmp_path)
        agent_log = tmp_path / "agent.log"
        with agent(server.api_url, script, agent_log, "--max-groups", "1", "--log-format", "json") as process:
            assert process.wait(60) == 0, agent_log.read_text()
    finally:
        server.stop()

    server_lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"qualgent.server", "uvicorn.error"} <= {line["logger"] for line in server_lines}
    agent_lines = [json.loads(line) for line in agent_log.read_text().splitlines() if line.strip()]
    about_the_job = [line for line in agent_lines if line.get("job_id") == job["id"]]
    assert any("completed" in line["message"] for line in about_the_job), agent_lines
    for line in about_the_job:
        assert line["group_id"]
        assert line["agent_id"]
        assert (line["org_id"], line["app_version_id"]) == ("acme", "v7")
