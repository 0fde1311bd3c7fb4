"""Named SQL: qualgent/db/queries.sql is split into `-- name: x` blocks once, at import."""

from __future__ import annotations

import re
from importlib import resources

from sqlalchemy import TextClause, text

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load() -> dict[str, TextClause]:
    source = resources.files("qualgent.db").joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(source)
    statements: dict[str, TextClause] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--")).strip()
        statements[name] = text(sql.rstrip(";"))
    return statements


class _Queries:
    def __init__(self) -> None:
        self._statements = _load()

    def __getattr__(self, name: str) -> TextClause:
        try:
            return self._statements[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in queries.sql") from None

    def names(self) -> list[str]:
        return sorted(self._statements)


Q = _Queries()
