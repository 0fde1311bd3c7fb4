"""One owner per state change: the table of transitions (qualgent/server/queue/transitions.py) is what docs/design.md
draws,
every writer of a job's or a group's status is in it, and each writer refuses a row not in the status it moves from
(tried against a finished job and a done group)."""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qualgent.server.db.database import Database
from qualgent.server.db.sql import Named, P
from qualgent.server.queue.transitions import NEW, TRANSITIONS, writers
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
# qualgent/server/bench writes its own scratch rows to measure against (a lab, not the product): not a state change.
NOT_THE_PRODUCT = ("qualgent/server/bench/",)

_ARROW = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)\s*:\s*(.+?)\s*$")
_UPDATE = re.compile(
    r"\bUPDATE\s+(jobs|job_groups)\b(?:\s+(?!SET\b)\w+)?\s+SET\b(.*?)(?=\bFROM\b|\bWHERE\b|\bRETURNING\b|;|$)", re.S
)
_CREATE = re.compile(r"\b(?:INSERT\s+INTO|COPY)\s+(jobs|job_groups)\b")
_STATUS = re.compile(r"(?<![.\w])status\s*=")
_FUNCTION = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.]+)\s*\(")


def writes_status(sql: str) -> bool:
    """Whether this SQL sets a job's or a group's status, or makes a row (which starts in its default status)."""
    return bool(_CREATE.search(sql)) or any(_STATUS.search(m.group(2)) for m in _UPDATE.finditer(sql))


def _diagram(machine: str) -> Counter[tuple[str, str, str]]:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text[text.index("## 1. State machines") : text.index("## 2. Tables")]
    heading = section.index(f"### {machine.capitalize()}")
    start = section.index("```mermaid", heading)
    block = section[start : section.index("```", start + 3)]
    arrows = [m.groups() for line in block.splitlines() if (m := _ARROW.match(line))]
    return Counter((source, target, label) for source, target, label in arrows)


@pytest.mark.parametrize("machine", ["job", "group"])
def test_the_diagram_draws_exactly_the_table(machine: str) -> None:
    table = Counter((t.source, t.target, t.label) for t in TRANSITIONS if t.machine == machine)
    drawn = _diagram(machine)
    assert drawn == table, f"drawn, not in the table: {sorted(drawn - table)}; not drawn: {sorted(table - drawn)}"


def test_every_transition_has_one_owner() -> None:
    keys = Counter((t.machine, t.source, t.target, t.trigger) for t in TRANSITIONS)
    assert [k for k, n in keys.items() if n > 1] == []
    statuses = {
        "job": {"pending", "running", "completed", "failed", "cancelled"},
        "group": {"pending", "running", "done"},
    }
    for t in TRANSITIONS:
        assert t.source in statuses[t.machine] | {NEW}, t
        assert t.target in statuses[t.machine], t


def _python_sql() -> dict[str, str]:
    """The SQL text written inline in the package's modules, by the constant or function that holds it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "qualgent").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(NOT_THE_PRODUCT):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign | ast.FunctionDef | ast.AsyncFunctionDef):
                strings = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                name = node.name if not isinstance(node, ast.Assign) else ast.unparse(node.targets[0])
                found.setdefault(f"{relative}:{name}", "")
                found[f"{relative}:{name}"] += " ".join(strings) + " "
    return found


def _defined_functions() -> dict[str, str]:
    """The text of every function qualgent/server/db/schema.sql defines, and of any a migration still creates, by
    name."""
    texts = [(ROOT / "qualgent" / "server" / "db" / "schema.sql").read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "alembic" / "versions").glob("*.sql"))]
    for path in sorted((ROOT / "alembic" / "versions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    found: dict[str, str] = {}
    for text in texts:
        starts = list(_FUNCTION.finditer(text))
        ends = [m.start() for m in starts[1:]] + [len(text)] if starts else []
        for m, end in zip(starts, ends, strict=True):
            name = m.group(1).split(".")[-1]
            found[name] = found.get(name, "") + text[m.start() : end] + " "
    return found


async def test_every_status_writer_is_in_the_table(db: Database) -> None:
    files = [
        Named(path.name)
        for path in sorted((ROOT / "qualgent" / "server" / "db").glob("*.sql"))
        if path.name != "schema.sql"
    ]
    named = {name: getattr(statements, name) for statements in files for name in statements.names()}
    live = {
        r["proname"]: r["prosrc"]
        for r in await db.rows(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname IN ('public', 'reporting')"
        )
    }
    inline = {name.rsplit(":", 1)[1]: sql for name, sql in _python_sql().items()}
    sources = [named, live, _defined_functions(), inline]
    found = {name for source in sources for name, sql in source.items() if writes_status(sql)}
    # the scan sees the writers it must (else it would pass on nothing)
    assert {"finish_runs", "start_jobs", "qualgent_run_jobs", "qualgent_claim", "copy_jobs"} <= found
    unlisted = found - writers()
    assert not unlisted, f"writes a status but is not in qualgent/server/queue/transitions.py: {unlisted}"
    known = set(named) | set(live) | set(inline)
    owners = {t.owner for t in TRANSITIONS} | writers()
    assert owners <= known, f"named in the table but nowhere in the repository: {owners - known}"


def test_the_scan_catches_a_new_writer() -> None:
    assert writes_status("UPDATE jobs j SET attempts = 1, status = 'pending' WHERE id = 1")
    assert writes_status("UPDATE job_groups SET status = CASE WHEN true THEN 'done' END")
    assert writes_status("INSERT INTO jobs (id) VALUES (1)")
    assert not writes_status("UPDATE jobs SET group_id = g.id FROM g WHERE j.status = 'pending'")
    assert not writes_status("UPDATE agents SET status = 'idle'")


# The guards: each writer, called for a row in a state it does not move from, changes nothing.


async def _finished(api: Api) -> tuple[str, str, dict[str, Any]]:
    """A completed job, its done group, and the claim that ran it."""
    job = await api.submit(test_path="a.spec.ts")
    agent_id = await api.register()
    claim = await api.claim(agent_id)
    assert claim is not None
    await api.run(agent_id, claim, job["id"], 0)
    assert (await api.call("GET", f"/jobs/{job['id']}"))["status"] == "completed"
    return job["id"], agent_id, claim


async def _state(db: Database, job_id: str) -> dict[str, Any]:
    return await db.one(
        "SELECT j.status, j.group_id, j.attempts, j.exit_code, j.finished_at, g.status AS group_status,"
        " (SELECT count(*) FROM attempts a WHERE a.job_id = j.id) AS tries"
        " FROM jobs j JOIN job_groups g ON g.id = j.group_id WHERE j.id = %(id)s",
        {"id": job_id},
    )


async def test_no_writer_moves_a_finished_job_but_a_rerun(api: Api, db: Database) -> None:
    job_id, agent_id, claim = await _finished(api)
    group_id = claim["group_id"]
    before = await _state(db, job_id)
    ids = {"job_ids": [job_id]}
    other = uuid.uuid4()
    await db.execute(
        P.move_jobs_to_groups,
        {**ids, "group_ids": [other], "org_ids": ["acme"], "app_version_ids": ["v1"], "targets": ["emulator"]},
    )
    one_run = {"numbers": [1], "finals": [False], "exit_codes": [3], "durations": [5], "output_tails": ["x"]}
    assert await db.rows(P.finish_runs, {**ids, **one_run, "outcomes": ["infra_error"], "errors": ["e"],
                                         "error_locations": [None]}) == []  # fmt: skip
    assert await db.rows(P.start_jobs, {**ids, "elapsed_ms": [0], "agent_id": agent_id, "group_id": group_id}) == []
    assert await db.rows(P.cancel_jobs, ids) == []
    runs = json.dumps([{"id": job_id, "elapsed_ms": 0, "outcome": "infra_error", "exit_code": 3}])
    assert await db.rows(P.run_jobs, {"agent_id": agent_id, "group_id": group_id, "runs": runs}) == []
    assert await db.rows(P.mark_group_done, {"group_id": group_id}) == []  # done already: not closed twice
    assert await db.value(P.close_group_and_free_agent, {"group_id": group_id, "lease_seconds": 30}) is False
    assert await _state(db, job_id) == before

    assert await db.rows(P.rerun_jobs, ids) != []  # the one way back
    assert (await _state(db, job_id))["status"] == "pending"
    assert await db.rows(P.rerun_jobs, ids) == []  # and only from a final state


async def test_a_cancel_takes_only_a_pending_or_running_job(api: Api, db: Database) -> None:
    job = await api.submit(test_path="a.spec.ts")
    assert [r["status"] for r in await db.rows(P.cancel_jobs, {"job_ids": [job["id"]]})] == ["cancelled"]
    assert await db.rows(P.cancel_jobs, {"job_ids": [job["id"]]}) == []
    assert await db.rows(P.rerun_jobs, {"job_ids": [job["id"]]}) != []
    assert (await _state(db, job["id"]))["status"] == "pending"


async def test_the_backoff_doubles_is_capped_and_jittered(db: Database) -> None:
    """qualgent_retry_delay, the one backoff (finish_runs' retry)."""
    for attempt, nominal in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (50, 300.0)):
        delays = set(
            await db.values(
                "SELECT qualgent_retry_delay(%(attempt)s) FROM generate_series(1, 50)", {"attempt": attempt}
            )
        )
        assert all(0.75 * nominal <= d <= 1.25 * nominal for d in delays)
        assert len(delays) > 1, "jitter spreads retries out"


@pytest.mark.parametrize(
    ("outcome", "final", "attempt", "max_attempts", "test_retries", "failures_before", "settled"),
    [
        ("passed", False, 1, 3, 0, 0, "completed"),
        ("passed", False, 3, 3, 0, 2, "completed"),
        ("infra_error", False, 1, 3, 0, 0, "pending"),
        ("infra_error", False, 3, 3, 0, 0, "failed"),  # no attempt left
        ("infra_error", True, 1, 3, 0, 0, "failed"),  # no retry can help
        ("test_failed", False, 1, 3, 0, 0, "failed"),  # no test retries asked for
        ("test_failed", False, 1, 3, 1, 0, "pending"),
        ("test_failed", False, 2, 3, 1, 1, "failed"),  # the one test retry spent
        ("test_failed", False, 2, 3, 2, 1, "pending"),
        ("test_failed", False, 3, 3, 2, 2, "failed"),  # no attempt left
        ("cancelled", False, 1, 3, 0, 0, "failed"),  # an agent's own word on a job not cancelled
    ],
)
async def test_what_a_run_leaves_its_job(
    db: Database,
    outcome: str,
    final: bool,
    attempt: int,
    max_attempts: int,
    test_retries: int,
    failures_before: int,
    settled: str,
) -> None:
    """qualgent_settle, the one place that decides; its earlier test failures read from the job's attempts."""
    job_id = uuid.uuid4()
    for number in range(1, failures_before + 1):
        await db.execute(
            "INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome)"
            " VALUES (%(job)s, %(n)s, %(job)s, %(job)s, now(), now(), 'test_failed')",
            {"job": job_id, "n": number},
        )
    decided = await db.value(
        "SELECT qualgent_settle(%(job)s, %(outcome)s, %(final)s, %(attempt)s, %(max)s, %(retries)s)",
        {"job": job_id, "outcome": outcome, "final": final, "attempt": attempt, "max": max_attempts,
         "retries": test_retries},
    )  # fmt: skip
    assert decided == settled
    flaky = await db.value(
        "SELECT qualgent_flaky(%(job)s, %(outcome)s, %(attempt)s)",
        {"job": job_id, "outcome": outcome, "attempt": attempt},
    )
    assert flaky == (outcome == "passed" and failures_before > 0)
