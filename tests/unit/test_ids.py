"""Job ids are made in bulk from one read of the random source: they must still be proper random UUIDs."""

from __future__ import annotations

from qualgent.server.queue.jobs import new_ids


def test_bulk_ids_are_distinct_version_4_uuids() -> None:
    ids = new_ids(5000)
    assert len(set(ids)) == 5000
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {"specified in RFC 4122"}
    assert new_ids(0) == []
