"""Every SQL statement the server runs is named in a `.sql` file of qualgent/server/db (issue 18, "one way to run SQL"):
no module elsewhere in the package holds SQL text. Read with ast (nothing is imported): every string constant,
f-string pieces included, docstrings left out, is held to patterns only SQL matches."""

from __future__ import annotations

import ast
import re

import pytest

from qualgent.server.db import sql as named
from qualgent.server.notify import CHANNEL
from tests.static.tools import ROOT

PACKAGE = ROOT / "qualgent"

LAB = "qualgent/server/bench/"  # the lab's own schemas and raw SKIP LOCKED baselines, not the server's SQL (H4's area)

SQL = re.compile(
    r"""
      \bSELECT\b[\s\S]*\bFROM\b
    | \bSELECT\s+(\d|now\(\)|\*|set_config|pg_)
    | \bINSERT\s+INTO\b
    | \bUPDATE\s+\w+(\s+\w+)?\s+SET\b
    | \bDELETE\s+FROM\b
    | \bON\s+CONFLICT\b
    | ^\s*(LISTEN|UNLISTEN|NOTIFY)\s+\w+\s*;?\s*$
    | \bSET\s+(LOCAL\s+)?\w+\s*(=|\bTO\b)
    | \bFOR\s+(NO\s+KEY\s+)?UPDATE\b
    | \bWHERE\s+\w+(\.\w+)?\s*(=|<|>|IN\b|IS\b|ILIKE\b|LIKE\b|ANY\b)
    | \bCREATE\s+(OR\s+REPLACE\s+)?(TABLE|INDEX|FUNCTION|VIEW|TRIGGER)\b
    """,
    re.VERBOSE | re.MULTILINE,
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_strings(source: str) -> list[tuple[int, str]]:
    """The string constants of a module's source that read as SQL: (line, text)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and SQL.search(node.value)
    ]


def test_the_scanner_finds_inline_sql_in_every_shape() -> None:
    caught = [
        'Q = "SELECT id FROM jobs WHERE id = :id"',
        'Q = text("INSERT INTO orgs (id) VALUES (:id) ON CONFLICT DO NOTHING")',
        "q = f\"UPDATE jobs SET status = 'x' WHERE {where}\"",
        'q = "DELETE FROM jobs"',
        'q = f"SELECT * FROM {table} WHERE org_id = :org_id"',
        "await conn.execute(f\"SET LOCAL work_mem = '{MEM}'\")",
        'await conn.execute("LISTEN qualgent")',
        'await conn.execute("SELECT 1")',
        'clause = "org_id = :org_id AND status IN (\'pending\')"; q = "SELECT id, status FROM jobs " + clause',
    ]
    for source in caught:
        assert sql_strings(source), source
    passed = [
        '"""SELECT from the queue: a docstring may name SQL."""',
        'message = "select which jobs to cancel: give an org"',
        'label = "update the agent, then delete the old one"',
        'log.warning("LISTEN connection lost (%s); reconnecting", err)',
    ]
    for source in passed:
        assert not sql_strings(source), source


def test_no_module_outside_qualgent_db_holds_sql() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(("qualgent/server/db/", LAB)):
            continue
        found += [f"{name}:{line}: {text.strip()[:80]!r}" for line, text in sql_strings(path.read_text())]
    assert not found, "SQL belongs in a named statement of qualgent/server/db/*.sql:\n" + "\n".join(found)


# schema.sql is not statements to run but the definitions every upgrade applies (tests/integration/test_schema.py).
NAMED_FILES = sorted(p.name for p in (PACKAGE / "server" / "db").glob("*.sql") if p.name != "schema.sql")


@pytest.mark.parametrize("filename", NAMED_FILES)
def test_every_sql_file_loads_and_its_statements_are_named(filename: str) -> None:
    loaded = named.Named(filename)
    assert loaded.names(), filename
    for name in loaded.names():
        text = getattr(loaded, name)
        assert text.strip(), f"{filename}: {name} is empty"
        # psycopg reads every % as a placeholder's start: a literal one would have to be written %%.
        assert "%" not in re.sub(r"%\(\w+\)s", "", text), f"{filename}: {name} has a literal %"


def test_the_hub_listens_on_the_channel_it_names() -> None:
    assert named.NOTIFY.listen == f"LISTEN {CHANNEL}"


def test_a_template_is_filled_only_by_composition() -> None:
    """A template's holes take psycopg.sql pieces; its parameters stay parameters."""
    from psycopg import sql

    composed = named.DASHBOARD.compose("pending_by", column=sql.Identifier("j", "priority"))
    text = composed.as_string(None)
    assert '"j"."priority" AS key' in text
    assert "{" not in text
    where = sql.SQL(named.DASHBOARD.where_org_id)
    assert "%(org_id)s" in named.DASHBOARD.compose("select_jobs", where=where).as_string(None)


def test_every_named_statement_is_used() -> None:
    """A statement nothing runs is dead: each name of the server's files appears in the package's code."""
    code = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    files = {
        "tokens.sql": "TOKENS",
        "fleet.sql": "FLEET",
        "dashboard.sql": "DASHBOARD",
        "reporting.sql": "REPORTING",
        "notify.sql": "NOTIFY",
        "queries.sql": "P",
        "retention.sql": "R",  # imported as R by qualgent.server.queue.retention
    }
    unused = []
    for filename, holder in files.items():
        for name in named.Named(filename).names():
            uses = (f"{holder}.{name}", f'"{name}"', f"_{name.removeprefix('where_')}")
            if name.startswith("where_"):
                continue  # chosen by a Selection's field name (queue/selection.py)
            if not any(use in code for use in uses):
                unused.append(f"{filename}: {name}")
    assert not unused, unused
