"""`qgjob report` and `qgjob top` against a real server, agent and database: the CLI agrees with SQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from tests.e2e.harness import Cli, Server, agent, fake_appwright

pytestmark = pytest.mark.e2e


def test_report_json_agrees_with_the_view_after_three_passes_and_a_failure(
    server: Server, cli: Cli, db_url: str, tmp_path: Path
) -> None:
    cli.submit("tests/a.spec.ts", "tests/b.spec.ts", "tests/c.spec.ts", "tests/d-fail.spec.ts", org_id="acme")
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log", "--max-groups", "1") as process:
        assert process.wait(60) == 0, (tmp_path / "agent.log").read_text()

    conninfo = libpq_url(db_url)
    with psycopg.connect(conninfo) as conn:
        in_sql = conn.execute(
            "SELECT success_rate, completed, failed FROM reporting.org_success_rates WHERE org_id = 'acme'"
        ).fetchone()
    assert in_sql == (0.75, 3, 1)

    report = cli.json("report", "--org-id", "acme")
    (acme,) = report["org_success_rates"]
    assert (acme["success_rate"], acme["completed"], acme["failed"]) == in_sql
    assert report["flaky_tests"][0]["test_path"] == "tests/d-fail.spec.ts"
    assert report["app_versions"][0]["installs"] == 1
    assert cli.json("report", "org-success-rates", "--since", "all")["org_success_rates"] == [acme]

    table = cli.run("report", "org-success-rates")
    assert table.returncode == 0, table.stderr
    assert "acme" in table.stdout
    assert "75.0%" in table.stdout

    frame = cli.run("top", "--once")
    assert frame.returncode == 0, frame.stderr
    assert "tests/d-fail.spec.ts" in frame.stdout
    assert "Latest results" in frame.stdout


def test_report_rejects_a_window_it_cannot_read(cli: Cli) -> None:
    done = cli.run("report", "--since", "last tuesday")
    assert done.returncode == 2
    assert "--since" in done.stderr
