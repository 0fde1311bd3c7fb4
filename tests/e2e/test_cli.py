"""What the CLI says and which exit code it gives, from outside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import Cli, Server, free_port

pytestmark = pytest.mark.e2e


def test_bad_flags_name_the_problem_and_exit_2(cli: Cli) -> None:
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.ts", "--priority", "urgent")
    assert done.returncode == 2
    assert "priority" in done.stderr
    assert "urgent" in done.stderr
    done = cli.run("status", "--job-id", "not-a-uuid")
    assert done.returncode == 2
    assert "--job-id" in done.stderr
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1")
    assert done.returncode == 2
    assert "--test" in done.stderr


def test_input_the_server_rejects_exits_2_with_its_reason(cli: Cli) -> None:
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "--rm-rf")
    assert done.returncode == 2, done
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test=-x")
    assert done.returncode == 2
    assert "--test" in done.stderr
    assert cli.json("list") == []


def test_an_unreachable_server_is_an_infrastructure_error(tmp_path: Path) -> None:
    done = Cli(f"http://127.0.0.1:{free_port()}/api").run("list", timeout=120)
    assert done.returncode == 3
    assert "127.0.0.1" in done.stderr


def test_json_output_is_json_only_and_tables_are_for_people(cli: Cli) -> None:
    done = cli.run("submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.spec.ts", "--json")
    assert done.returncode == 0
    jobs = json.loads(done.stdout)
    assert [job["test_path"] for job in jobs] == ["a.spec.ts"]
    table = cli.run("status", "--job-id", jobs[0]["id"])
    assert table.returncode == 0
    assert jobs[0]["id"] in table.stdout
    assert "pending" in table.stdout
    cancelled = cli.run("cancel", "--job-id", jobs[0]["id"])
    assert cancelled.returncode == 0
    assert cli.json("status", "--job-id", jobs[0]["id"])["status"] == "cancelled"


def test_db_commands_and_the_out_of_date_schema_refusal(empty_db_url: str, tmp_path: Path) -> None:
    cli = Cli("http://unused/api")
    current = cli.run("db", "current", "--database-url", empty_db_url)
    assert current.returncode == 0
    assert "database: empty" in current.stdout
    assert cli.run("db", "check", "--database-url", empty_db_url).returncode == 1

    refused = Server(tmp_path / "server.log", database_url=empty_db_url)
    with pytest.raises(AssertionError, match="qgjob db upgrade"):
        refused.start(timeout=30)
    assert refused.process is not None
    assert refused.process.returncode == 2

    sql = cli.run("db", "upgrade", "--sql", "--database-url", empty_db_url)
    assert sql.returncode == 0
    assert "CREATE TABLE job_groups" in sql.stdout
    upgraded = cli.run("db", "upgrade", "--database-url", empty_db_url)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = cli.run("db", "check", "--database-url", empty_db_url)
    assert checked.returncode == 0, checked.stdout
    assert "up to date" in checked.stdout

    started = Server(tmp_path / "server.log", database_url=empty_db_url).start()
    assert started.stop() == 0
