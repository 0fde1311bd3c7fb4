"""`qgjob prune` against a real server's database: what it would delete, what it deletes, and `qgjob report`
(read through the running server) saying the same before and after."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from tests.e2e.harness import Cli, Server, agent, fake_appwright

pytestmark = pytest.mark.e2e

BACKDATE = """
UPDATE attempts SET started_at = started_at - interval '100 days', finished_at = finished_at - interval '100 days';
UPDATE jobs SET created_at = created_at - interval '100 days', started_at = started_at - interval '100 days',
                finished_at = finished_at - interval '100 days'
WHERE status IN ('completed', 'failed', 'cancelled');
UPDATE job_groups SET claimed_at = claimed_at - interval '100 days', finished_at = finished_at - interval '100 days'
WHERE status = 'done';
"""


def test_prune_dry_run_then_prune_and_the_report_still_counts_the_jobs(
    server: Server, cli: Cli, db_url: str, tmp_path: Path
) -> None:
    finished = cli.submit("tests/a.spec.ts", "tests/b.spec.ts", "tests/c-fail.spec.ts", org_id="acme")
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log", "--max-groups", "1") as process:
        assert process.wait(60) == 0, (tmp_path / "agent.log").read_text()
    waiting = cli.submit("tests/d.spec.ts", org_id="acme", app="v2", target="device")  # no device agent: pending
    conninfo = libpq_url(db_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(BACKDATE)  # type: ignore[call-overload]  # several statements, no parameters
    before = cli.json("report", "org-success-rates", "--since", "all")["org_success_rates"]
    assert [(r["org_id"], r["completed"], r["failed"], r["success_rate"]) for r in before] == [
        ("acme", 2, 1, pytest.approx(0.6667))
    ]

    dry = cli.json("prune", "--dry-run", "--database-url", db_url)
    assert dry["dry_run"] is True
    assert (dry["jobs"], dry["attempts"], dry["groups"], dry["older_than_days"]) == (3, 3, 1, 90)
    assert cli.json("status", "--job-id", finished[0]["id"])["status"] == "completed", "a dry run deletes nothing"

    done = cli.json("prune", "--database-url", db_url)
    assert done["dry_run"] is False
    assert (done["jobs"], done["attempts"], done["groups"]) == (3, 3, 1)
    gone = cli.run("status", "--job-id", finished[0]["id"])
    assert gone.returncode == 2, (gone.stdout, gone.stderr)
    assert cli.json("status", "--job-id", waiting[0]["id"])["status"] == "pending"
    after = cli.json("report", "org-success-rates", "--since", "all")["org_success_rates"]
    assert [(r["org_id"], r["finished"], r["completed"], r["failed"], r["success_rate"]) for r in after] == [
        (r["org_id"], r["finished"], r["completed"], r["failed"], r["success_rate"]) for r in before
    ]

    again = cli.run("prune", "--database-url", db_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("pruned 0 finished job(s)"), again.stdout
    assert "reporting" in again.stdout


def test_prune_follows_the_retention_setting_and_refuses_a_bad_one(db_url: str) -> None:
    cli = Cli("http://127.0.0.1:9/api")  # prune talks to the database only
    off = Cli(cli.api_url, env={"QUALGENT_RETENTION_DAYS": "0"}).run("prune", "--database-url", db_url, "--json")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["skipped"] is True
    week = Cli(cli.api_url, env={"QUALGENT_RETENTION_DAYS": "7"}).json("prune", "--dry-run", "--database-url", db_url)
    assert week["older_than_days"] == 7
    bad = Cli(cli.api_url, env={"QUALGENT_RETENTION_DAYS": "soon"}).run("prune", "--database-url", db_url)
    assert bad.returncode == 2
    assert "QUALGENT_RETENTION_DAYS" in bad.stderr
    zero = cli.run("prune", "--older-than", "0", "--database-url", db_url)
    assert zero.returncode == 2
    assert "--older-than" in zero.stderr
