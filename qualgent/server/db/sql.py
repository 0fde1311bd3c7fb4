"""Named SQL: every statement the server runs is a `-- name: x` block of a `.sql` file here, split once, at import.

    queries.sql    the hot path and every job and group state change: claims, reports, jobs (P)
    retention.sql  pruning (RETENTION)
    tokens.sql     API tokens (TOKENS)
    fleet.sql      agents, orgs, capacity caps, BrowserStack builds (FLEET)
    dashboard.sql  the queue's figures, the dashboard's pages, bulk actions, health (DASHBOARD)
    reporting.sql  the reporting views' reports (REPORTING)
    notify.sql     the LISTEN hub's connection (NOTIFY)

A statement whose shape depends on the request (a filter's columns, a report's function) is a template with
`{name}` holes, filled by psycopg.sql composition of fixed identifiers and placeholders (`Named.compose`): no SQL
text is built from strings anywhere else."""

from __future__ import annotations

import re
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_BIND = re.compile(r"(?<![:\w]):(\w+)")  # `:name`, not a `::type` cast


def _load(filename: str) -> dict[str, str]:
    """The file's `-- name: x` blocks, comment lines dropped, `:name` parameters in psycopg's `%(name)s` style."""
    source = resources.files("qualgent.server.db").joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(source)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        text = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        statements[name] = _BIND.sub(r"%(\1)s", text.rstrip(";"))
    return statements


class Named:
    """A file's statements in psycopg's parameter style (`%(name)s`), for qualgent.server.db.database."""

    def __init__(self, filename: str) -> None:
        self._filename = filename
        self._statements = _load(filename)

    def __getattr__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {self._filename}") from None

    def names(self) -> list[str]:
        return sorted(self._statements)

    def compose(self, name: str, **parts: sql.Composable) -> sql.Composed:
        """A template's `{hole}`s filled with composed pieces (identifiers, placeholders, fixed fragments)."""
        return sql.SQL(self.__getattr__(name)).format(**parts)


P = Named("queries.sql")
RETENTION = Named("retention.sql")
TOKENS = Named("tokens.sql")
FLEET = Named("fleet.sql")
DASHBOARD = Named("dashboard.sql")
REPORTING = Named("reporting.sql")
NOTIFY = Named("notify.sql")
