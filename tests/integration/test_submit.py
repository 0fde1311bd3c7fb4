"""A bulk submit answers with its jobs without reading them back from the database (qualgent.server.queue.jobs.NewJob
mirrors the table's defaults): what it answers must be exactly what a later read shows."""

from __future__ import annotations

import json

import psycopg
import pytest

from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import jobs
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def test_the_submit_answer_is_what_the_database_holds(api: Api) -> None:
    body = [
        {"org_id": "acme", "app_version_id": "v1", "test_path": "tests/a.spec.ts"},
        {"org_id": "acme", "app_version_id": "v1", "test_path": "tests/b.spec.ts", "priority": "high",
         "max_attempts": 5, "test_retries": 2, "timeout_seconds": 90},
        {"org_id": "beta", "app_version_id": "v9", "test_path": "tests/c.spec.ts", "target": "device",
         "priority": "low"},
    ]  # fmt: skip
    answered = await api.call("POST", "/jobs", body, expect=201)
    assert [j["test_path"] for j in answered] == ["tests/a.spec.ts", "tests/b.spec.ts", "tests/c.spec.ts"]
    for job in answered:
        stored = await api.call("GET", f"/jobs/{job['id']}")
        stored.pop("attempt_history", None)
        job.pop("attempt_history", None)
        assert stored.pop("queue")["groups_ahead"] >= 0  # where it stands now: not part of the stored job
        job.pop("queue", None)
        assert job == stored


async def test_notifications_of_a_large_submit_are_split_under_the_payload_limit(api: Api, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_url(db_url), autocommit=True) as listener:
        await listener.execute("LISTEN qualgent")
        body = [{"org_id": "acme", "app_version_id": f"v{i // 50}", "test_path": f"t/{i}.spec.ts"} for i in range(400)]
        answered = await api.call("POST", "/jobs", body, expect=201)
        payloads = [json.loads(n.payload) async for n in listener.notifies(timeout=5, stop_after=4)]
    jobs = [p for p in payloads if p["kind"] == "jobs"]
    assert sorted(len(p["ids"]) for p in jobs) == [100, 150, 150]  # under the 8,000-byte payload limit
    assert {p["status"] for p in jobs} == {"pending"}
    assert {i for p in jobs for i in p["ids"]} == {j["id"] for j in answered}
    assert [p["targets"] for p in payloads if p["kind"] == "work"] == [["emulator"]]


async def test_paths_with_backslashes_quotes_and_unicode_are_stored_as_given(api: Api) -> None:
    paths = ["tests\\windows\\login.spec.ts", 'tests/it\'s "quoted".spec.ts', "tests/ünïcødé ✓.spec.ts", "tests/\\N"]
    body = [{"org_id": "acme", "app_version_id": "v1", "test_path": p} for p in paths]
    answered = await api.call("POST", "/jobs", body, expect=201)
    for job, path in zip(answered, paths, strict=True):
        assert (await api.call("GET", f"/jobs/{job['id']}"))["test_path"] == path


async def test_the_queue_stores_values_copy_would_split_exactly_as_given(db: Database, db_url: str) -> None:
    """Bulk submits write COPY text, escaping values only when some need it: a tab, a newline, a carriage return
    or a backslash in a value (the API refuses control characters; the queue does not rely on it). A backslash is
    told apart from the ones of the NULL markers written for jobs without a timeout, with or without any."""
    specs_by_submit = [
        [
            jobs.JobSpec("acme", "v\t1", path)
            for path in ["plain.spec.ts", "tab\there.spec.ts", "line\nbreak.spec.ts", "cr\rhere.spec.ts", "back\\slash"]
        ],
        [jobs.JobSpec("acme", "v2", "\\N"), jobs.JobSpec("acme", "v2", "a\\b"), jobs.JobSpec("acme", "v2", "plain")],
        [jobs.JobSpec("acme", "v3", "\\N", timeout_seconds=60), jobs.JobSpec("acme", "v3", "a\\b", timeout_seconds=60)],
        [jobs.JobSpec("acme", "v4", "\\N"), jobs.JobSpec("acme", "v4", "a\\b", timeout_seconds=60)],
    ]
    q = Queue(db, Settings(database_url=db_url))
    for specs in specs_by_submit:
        submitted = await jobs.submit(q, specs)
        stored = [await jobs.get(q, job.id) for job in submitted.jobs if isinstance(job, jobs.NewJob)]
        assert [(job["app_version_id"], job["test_path"], job["timeout_seconds"]) for job in stored] == [
            (spec.app_version_id, spec.test_path, spec.timeout_seconds) for spec in specs
        ]
