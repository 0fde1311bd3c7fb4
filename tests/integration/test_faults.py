"""Retries, fencing, cancel and rescue, through the agent protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from qualgent.server.api import create_app
from qualgent.server.db.engine import libpq_url
from qualgent.server.settings import Settings
from tests.integration.conftest import Api, serve_api, serve_app

pytestmark = pytest.mark.anyio


def _skip_backoff(db_url: str) -> None:
    """Tests need not wait out the retry backoff (2 s, 4 s, ...): make retried jobs due now."""
    conninfo = libpq_url(db_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET run_after = now() WHERE status = 'pending'")
        conn.execute("UPDATE job_groups SET available_at = now() WHERE status = 'pending'")


async def _run_once(api: Api, agent: str, code: int | None, db_url: str, **extra: Any) -> dict[str, Any]:
    _skip_backoff(db_url)
    claim = await api.claim(agent)
    assert claim is not None
    return await api.run(agent, claim, claim["jobs"][0]["id"], code, **extra)


async def test_an_infrastructure_error_then_a_pass_completes_after_two_attempts(api: Api, db_url: str) -> None:
    job = await api.submit()
    agent = await api.register()
    retried = await _run_once(api, agent, 3, db_url)
    assert (retried["status"], retried["attempts"]) == ("pending", 1)
    assert retried["run_after"] > retried["updated_at"][:19]
    done = await _run_once(api, agent, 0, db_url)
    assert (done["status"], done["attempts"]) == ("completed", 2)
    history = (await api.call("GET", f"/jobs/{job['id']}"))["attempt_history"]
    assert [(a["outcome"], a["exit_code"]) for a in history] == [("infra_error", 3), ("passed", 0)]


async def test_infrastructure_errors_every_time_fail_after_max_attempts(api: Api, db_url: str) -> None:
    await api.submit()
    agent = await api.register()
    for _ in range(3):
        last = await _run_once(api, agent, 3, db_url)
    assert (last["status"], last["attempts"]) == ("failed", 3)
    assert "exit" in (last["result"]["error"] or "") or last["result"]["exit_code"] == 3
    assert await api.claim(agent, expect=204) is None


async def test_a_test_failure_is_final_unless_test_retries_were_asked(api: Api, db_url: str) -> None:
    await api.submit(test_path="plain.spec.ts")
    agent = await api.register()
    failed = await _run_once(api, agent, 1, db_url)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)

    await api.submit(test_path="flaky.spec.ts", test_retries=1)
    retried = await _run_once(api, agent, 1, db_url)
    assert retried["status"] == "pending"
    passed = await _run_once(api, agent, 0, db_url)
    assert (passed["status"], passed["attempts"], passed["flaky"]) == ("completed", 2, True)


async def test_the_agent_cannot_claim_an_outcome_its_exit_code_contradicts(api: Api, db_url: str) -> None:
    await api.submit()
    agent = await api.register()
    reported = await _run_once(api, agent, 1, db_url, outcome="passed")
    assert reported["status"] == "failed"


async def test_a_stale_token_is_refused_and_changes_nothing(api: Api) -> None:
    job = await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    forged = {**claim, "token": "00000000-0000-4000-8000-000000000000"}
    body = await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/start",
                          {"group_id": forged["group_id"], "token": forged["token"]}, expect=409)  # fmt: skip
    assert body["error"] == "StaleClaim"
    assert (await api.call("GET", f"/jobs/{job['id']}"))["status"] == "pending"


async def test_cancel_during_a_run_wins_over_the_late_result(api: Api) -> None:
    job = await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/start", ref)
    await api.call("DELETE", f"/jobs/{job['id']}")
    beat = await api.call("PUT", f"/agents/{agent}/heartbeat", {"claims": [ref]})
    assert beat["cancelled_job_ids"] == [job["id"]]
    await api.call("POST", f"/agents/{agent}/jobs/{job['id']}/result", {**ref, "exit_code": 0}, expect=409)
    shown = await api.call("GET", f"/jobs/{job['id']}")
    assert shown["status"] == "cancelled"
    assert [(a["outcome"], a["finished_at"] is not None) for a in shown["attempt_history"]] == [("cancelled", True)]
    agent_row = await api.call("GET", f"/agents/{agent}")
    assert agent_row["status"] == "idle", "the group ended with its only job: the agent is free"


async def test_a_lapsed_lease_is_rescued_and_the_late_agent_is_fenced(db_url: str) -> None:
    async with serve_api(Settings(database_url=db_url, lease_seconds=1)) as api:
        first = await api.submit(test_path="a.spec.ts")
        second = await api.submit(test_path="b.spec.ts")
        frozen = await api.register("frozen")
        claim = await api.claim(frozen)
        assert claim is not None
        ref = {"group_id": claim["group_id"], "token": claim["token"]}
        await api.call("POST", f"/agents/{frozen}/jobs/{first['id']}/start", ref)
        for _ in range(50):  # the rescue loop runs every half second with a 1 s lease
            if (await api.call("GET", f"/jobs/{first['id']}"))["status"] == "pending":
                break
            await asyncio.sleep(0.2)
        rescued = await api.call("GET", f"/jobs/{first['id']}")
        assert rescued["status"] == "pending"
        assert rescued["attempt_history"][0]["outcome"] == "infra_error"
        assert (await api.call("GET", f"/jobs/{second['id']}"))["status"] == "pending"
        late = {**ref, "exit_code": 0}
        await api.call("POST", f"/agents/{frozen}/jobs/{first['id']}/result", late, expect=409)
        assert (await api.call("GET", f"/jobs/{first['id']}"))["status"] == "pending"


async def test_a_claim_hands_out_the_due_jobs_and_puts_those_in_backoff_back_in_the_queue(
    api: Api, db_url: str
) -> None:
    """A group can hold a job still in backoff (a retry joins its key's pending group) beside due ones: the claim
    hands out the due ones; the other waits in a pending group of its own until it is due. A group holding only
    jobs in backoff is retired by the claim, and nothing is handed out."""
    waiting, due = await api.submit(test_path="waiting.spec.ts"), await api.submit(test_path="due.spec.ts")
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("UPDATE jobs SET run_after = now() + interval '1 hour' WHERE id = %s", (waiting["id"],))
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    assert [j["id"] for j in claim["jobs"]] == [due["id"]]
    assert await api.claim(agent, expect=204) is None  # the job in backoff is not due
    requeued = await api.call("GET", f"/jobs/{waiting['id']}")
    assert requeued["status"] == "pending"
    assert requeued["group_id"] != claim["group_id"]

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:  # its group looks due; the job is not
        conn.execute("UPDATE job_groups SET available_at = now() WHERE status = 'pending'")
    assert await api.claim(agent, expect=204) is None
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        (groups,) = conn.execute("SELECT count(*) FROM job_groups WHERE status = 'pending'").fetchone() or (0,)
        (group,) = conn.execute("SELECT group_id FROM jobs WHERE id = %s", (waiting["id"],)).fetchone() or (None,)
    assert groups == 1  # one pending group again, made for it anew: the retired one is done
    assert str(group) != requeued["group_id"]
    assert (await api.call("GET", f"/agents/{agent}"))["status"] == "busy"  # still running the first group


async def test_a_claimed_group_with_nothing_left_to_run_is_retired(api: Api, db_url: str) -> None:
    """A pending group whose jobs are all gone (a cancel racing the claim can leave one): the claim takes it, finds
    nothing to run, retires it and answers none; the agent stays idle."""
    job = await api.submit(test_path="gone.spec.ts")
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:  # behind the API's back: the group stays pending
        conn.execute("UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (job["id"],))
    agent = await api.register()
    assert await api.claim(agent, expect=204) is None
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        assert conn.execute("SELECT status FROM job_groups").fetchall() == [("done",)]
    assert (await api.call("GET", f"/agents/{agent}"))["status"] == "idle"


async def test_a_heartbeat_extends_the_leases_it_holds_and_names_those_it_lost(api: Api, db_url: str) -> None:
    await api.submit()
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    forged = {"group_id": claim["group_id"], "token": "00000000-0000-4000-8000-000000000000"}
    elsewhere = {"group_id": "00000000-0000-4000-8000-0000000000aa", "token": claim["token"]}

    def lease() -> Any:
        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute("SELECT lease_expires_at FROM job_groups WHERE id = %s", (claim["group_id"],)).fetchone()
            return row[0] if row else None

    before = lease()
    await asyncio.sleep(0.05)  # the scenario: time passes, so an extended lease ends later than `before`
    beat = await api.call("PUT", f"/agents/{agent}/heartbeat", {"claims": [ref, elsewhere]})
    assert (beat["held"], beat["lost"], beat["cancelled_job_ids"]) == ([ref["group_id"]], [elsewhere["group_id"]], [])
    assert lease() > before
    extended = lease()
    beat = await api.call("PUT", f"/agents/{agent}/heartbeat", {"claims": [forged]})  # a stale token extends nothing
    assert (beat["held"], beat["lost"]) == ([], [claim["group_id"]])
    assert lease() == extended
    nobody = "00000000-0000-4000-8000-0000000000bb"
    unknown = await api.call("PUT", f"/agents/{nobody}/heartbeat", {"claims": []}, expect=404)
    assert unknown["error"] == "NotFound"


async def test_when_its_connections_are_killed_one_request_fails_and_the_pool_replaces_the_rest(
    settings: Settings, db_url: str
) -> None:
    # what a PostgreSQL restart does to the server's idle connections, on one database only: kill their backends
    app = create_app(settings)
    async with serve_app(app) as api:
        await api.call("GET", "/jobs")  # the start-up is over: the pool is the app's
        db = app.state.services.queue.db
        held = [await db.pool.getconn() for _ in range(5)]
        for conn in held:
            await db.pool.putconn(conn)
        assert db.pool.get_stats()["pool_available"] == 5
        with psycopg.connect(libpq_url(db_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'qgjob server'"
            ).fetchone()
        assert killed == (5,)
        answers = []
        for _ in range(8):
            response = await api.client.get("/api/jobs")
            answers.append(response.status_code)
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "1"
        # the first request met a broken connection; the other four were tested and replaced before any was used
        assert answers == [503] + [200] * 7
