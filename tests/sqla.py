"""The named statements (qualgent.server.db.sql, psycopg's `%(name)s` style) as SQLAlchemy text, for the tests that read
plans or row versions on a sync SQLAlchemy connection of their own: `Q.heartbeat` is `P.heartbeat`, bound the
SQLAlchemy way."""

from __future__ import annotations

import re

from sqlalchemy import TextClause, text

from qualgent.server.db.sql import Named

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class AsText:
    def __init__(self, statements: Named) -> None:
        self._statements = statements

    def __getattr__(self, name: str) -> TextClause:
        return text(_PLACEHOLDER.sub(r":\1", getattr(self._statements, name)))
