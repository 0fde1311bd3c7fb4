"""qualgent.server.db.database: one pool, statements alone in autocommit or together in a transaction, typed rows."""

from __future__ import annotations

import msgspec
import pytest

from qualgent.server.db.database import Database, NoRow

pytestmark = pytest.mark.anyio


class Org(msgspec.Struct, frozen=True):
    id: str
    tier: str


async def test_typed_rows_and_values(db: Database) -> None:
    await db.execute("INSERT INTO orgs (id) VALUES (%(id)s), ('zeta')", {"id": "acme"})
    orgs = await db.rows("SELECT id, tier::text AS tier FROM orgs ORDER BY id", None, Org)
    assert orgs == [Org("acme", "standard"), Org("zeta", "standard")]
    assert await db.value("SELECT count(*) FROM orgs") == 2
    assert await db.values("SELECT id FROM orgs ORDER BY id DESC") == ["zeta", "acme"]
    assert (await db.one("SELECT id FROM orgs WHERE id = %(id)s", {"id": "acme"}))["id"] == "acme"
    assert await db.first("SELECT id FROM orgs WHERE id = 'none'") is None
    with pytest.raises(NoRow):
        await db.one("SELECT id FROM orgs WHERE id = 'none'")


async def test_a_transaction_commits_whole_or_not_at_all(db: Database) -> None:
    async def fails() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO orgs (id) VALUES ('lost')")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await fails()
    assert await db.value("SELECT count(*) FROM orgs WHERE id = 'lost'") == 0
    async with db.transaction() as tx:
        assert await tx.execute("INSERT INTO orgs (id) VALUES ('kept'), ('also')") == 2
    assert await db.value("SELECT count(*) FROM orgs") == 2
