"""The agents' batched path, POST /api/agents/{id}/groups/{group_id}/progress: starts and results of many jobs in
one request and one transaction, with the same rules as the single-job routes."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from qualgent.server.db.engine import libpq_url
from qualgent.server.db.plans import plans_inside
from qualgent.server.db.sql import P
from qualgent.server.settings import Settings
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def _group_of(api: Api, tests: list[str], **extra: Any) -> tuple[str, dict[str, Any]]:
    for path in tests:
        await api.submit(test_path=path, **extra)
    agent_id = await api.register()
    claim = await api.claim(agent_id)
    assert claim is not None
    assert len(claim["jobs"]) == len(tests)
    return agent_id, claim


def _path(agent_id: str, claim: dict[str, Any]) -> str:
    return f"/agents/{agent_id}/groups/{claim['group_id']}/progress"


async def test_a_whole_group_started_and_finished_in_one_request(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts", "c.spec.ts"])
    ids = [j["id"] for j in claim["jobs"]]
    body = {
        "token": claim["token"],
        "started": [{"job_id": i, "elapsed_ms": 1500} for i in ids],
        "results": [
            {"job_id": ids[0], "exit_code": 0, "duration_ms": 1400, "output_tail": "ok"},
            {"job_id": ids[1], "exit_code": 1, "duration_ms": 900, "output_tail": "expected 2 got 3"},
            {"job_id": ids[2], "exit_code": 0, "duration_ms": 700},
        ],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert sorted(j["id"] for j in answer["started"]) == sorted(ids)
    assert {j["id"]: j["status"] for j in answer["reported"]} == {
        ids[0]: "completed",
        ids[1]: "failed",
        ids[2]: "completed",
    }
    assert answer["refused"] == []
    assert answer["group_done"] is True

    failed = await api.call("GET", f"/jobs/{ids[1]}")
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert (failed["result"]["exit_code"], failed["result"]["output_tail"]) == (1, "expected 2 got 3")
    assert [a["outcome"] for a in failed["attempt_history"]] == ["test_failed"]
    # the start is dated by the agent's elapsed time, not by the moment the report arrived
    started = failed["attempt_history"][0]
    assert started["started_at"] < started["finished_at"]
    agent = await api.call("GET", f"/agents/{agent_id}")
    assert agent["status"] == "idle"


async def test_starts_and_results_in_separate_reports_as_a_slow_suite_sends_them(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    first, second = (j["id"] for j in claim["jobs"])
    path, token = _path(agent_id, claim), claim["token"]
    await api.call("POST", path, {"token": token, "started": [{"job_id": first}]})
    assert (await api.call("GET", f"/jobs/{first}"))["status"] == "running"
    answer = await api.call(
        "POST", path, {"token": token, "results": [{"job_id": first, "exit_code": 0}], "started": [{"job_id": second}]}
    )
    assert [j["status"] for j in answer["reported"]] == ["completed"]
    assert answer["group_done"] is False
    answer = await api.call("POST", path, {"token": token, "results": [{"job_id": second, "exit_code": 0}]})
    assert answer["group_done"] is True


async def test_a_report_that_runs_one_job_whole_and_starts_another_answers_both_starts(api: Api) -> None:
    """A quick test started and ended within the report, beside the start of the next one (a suite of quick tests
    run as processes sends these): the answer lists both starts as accepted, and the agent waits on each."""
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    first, second = (j["id"] for j in claim["jobs"])
    body = {
        "token": claim["token"],
        "started": [{"job_id": first}, {"job_id": second}],
        "results": [{"job_id": first, "exit_code": 0}],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert sorted((j["id"], j["status"]) for j in answer["started"]) == sorted(
        [(first, "completed"), (second, "running")]
    )
    assert [(j["id"], j["status"]) for j in answer["reported"]] == [(first, "completed")]


async def test_a_job_cancelled_after_the_claim_is_refused_and_the_rest_recorded(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    kept, cancelled = (j["id"] for j in claim["jobs"])
    await api.call("DELETE", f"/jobs/{cancelled}")
    body = {
        "token": claim["token"],
        "started": [{"job_id": kept}, {"job_id": cancelled}],
        "results": [{"job_id": kept, "exit_code": 0}, {"job_id": cancelled, "exit_code": 0}],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert [j["id"] for j in answer["reported"]] == [kept]
    assert {(r["job_id"], r["status"]) for r in answer["refused"]} == {(cancelled, "cancelled")}
    assert answer["group_done"] is True
    assert (await api.call("GET", f"/jobs/{cancelled}"))["status"] == "cancelled"


async def test_infrastructure_errors_in_a_batch_are_retried_and_test_failures_are_not(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"], max_attempts=3)
    infra, failing = (j["id"] for j in claim["jobs"])
    body = {
        "token": claim["token"],
        "started": [{"job_id": infra}, {"job_id": failing}],
        "results": [{"job_id": infra, "exit_code": 3}, {"job_id": failing, "exit_code": 1}],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert {j["id"]: j["status"] for j in answer["reported"]} == {infra: "pending", failing: "failed"}
    retried = await api.call("GET", f"/jobs/{infra}")
    assert (retried["status"], retried["attempts"]) == ("pending", 1)


async def test_a_stale_token_changes_nothing(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts"])
    job_id = claim["jobs"][0]["id"]
    body = {"token": "00000000-0000-0000-0000-000000000000", "started": [{"job_id": job_id}]}
    refused = await api.call("POST", _path(agent_id, claim), body, expect=409)
    assert refused["error"] == "StaleClaim"
    assert (await api.call("GET", f"/jobs/{job_id}"))["status"] == "pending"


async def test_a_stale_token_on_a_report_of_whole_runs_changes_nothing(api: Api) -> None:
    """The one-statement path (every start with its result) is fenced like the general one."""
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    ids = [j["id"] for j in claim["jobs"]]
    body = {
        "token": "00000000-0000-0000-0000-000000000000",
        "started": [{"job_id": i} for i in ids],
        "results": [{"job_id": i, "exit_code": 0} for i in ids],
    }
    refused = await api.call("POST", _path(agent_id, claim), body, expect=409)
    assert refused["error"] == "StaleClaim"
    other = await api.register()
    body["token"] = claim["token"]
    assert (await api.call("POST", _path(other, claim), body, expect=409))["error"] == "StaleClaim"
    assert [(await api.call("GET", f"/jobs/{i}"))["status"] for i in ids] == ["pending", "pending"]
    assert (await api.call("GET", f"/agents/{agent_id}"))["status"] == "busy"


async def test_a_result_for_a_job_of_another_group_is_refused(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts"])
    other = await api.submit(app_version_id="v2")
    body = {"token": claim["token"], "results": [{"job_id": other["id"], "exit_code": 0}]}
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert answer["reported"] == []
    assert answer["refused"][0]["job_id"] == other["id"]
    assert (await api.call("GET", f"/jobs/{other['id']}"))["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"started": [{"job_id": "x"}]}, "started"),
        ({"started": [{"job_id": "00000000-0000-0000-0000-000000000000"}] * 1001}, "started"),
        ({"results": [{"job_id": "00000000-0000-0000-0000-000000000000", "exit_code": "0"}]}, "exit_code"),
        ({"started": [], "extra": 1}, "extra"),
    ],
)
async def test_bad_progress_reports_are_a_400_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts"])
    refused = await api.call("POST", _path(agent_id, claim), {"token": claim["token"], **body}, expect=400)
    assert field in str(refused)


async def test_a_last_attempt_lost_to_infrastructure_fails_the_job_in_one_report(api: Api) -> None:
    agent_id, claim = await _group_of(api, ["a.spec.ts"], max_attempts=1)
    job_id = claim["jobs"][0]["id"]
    body = {
        "token": claim["token"],
        "started": [{"job_id": job_id, "elapsed_ms": 20}],
        "results": [{"job_id": job_id, "exit_code": None, "outcome": "infra_error", "duration_ms": 20}],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert [(j["status"], j["attempts"]) for j in answer["reported"]] == [("failed", 1)]
    job = await api.call("GET", f"/jobs/{job_id}")
    assert job["result"]["error"] == "infrastructure error after 1 attempt(s)"
    assert [a["outcome"] for a in job["attempt_history"]] == ["infra_error"]


async def test_the_last_report_of_a_group_claims_the_next_one_when_asked(api: Api) -> None:
    """then_claim: a report that closes the group answers the agent's next group as `next` (one request, not
    two); a report that leaves work in the group, or finds nothing waiting, answers next: null."""
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    await api.submit(app_version_id="v2", test_path="c.spec.ts")
    first, second = (j["id"] for j in claim["jobs"])
    partial = {"token": claim["token"], "started": [{"job_id": first}], "results": [{"job_id": first, "exit_code": 0}]}
    answer = await api.call("POST", _path(agent_id, claim), {**partial, "then_claim": True})
    assert (answer["group_done"], answer["next"]) == (False, None)  # b is still to run: no claim
    last = {"token": claim["token"], "started": [{"job_id": second}], "results": [{"job_id": second, "exit_code": 0}]}
    answer = await api.call("POST", _path(agent_id, claim), {**last, "then_claim": True})
    assert answer["group_done"] is True
    following = answer["next"]
    assert following["app_version_id"] == "v2"
    assert [j["test_path"] for j in following["jobs"]] == ["c.spec.ts"]
    assert (await api.call("GET", f"/agents/{agent_id}"))["status"] == "busy"
    job = following["jobs"][0]["id"]
    done = {"token": following["token"], "started": [{"job_id": job}], "results": [{"job_id": job, "exit_code": 0}]}
    answer = await api.call("POST", _path(agent_id, following), {**done, "then_claim": True})
    assert (answer["group_done"], answer["next"]) == (True, None)  # nothing waiting
    assert (await api.call("GET", f"/agents/{agent_id}"))["status"] == "idle"


async def test_a_last_report_of_results_alone_claims_the_next_group_too(api: Api) -> None:
    """A slow suite reports each start, then each result: the last result closes the group on the general path,
    and then_claim still answers the next group."""
    agent_id, claim = await _group_of(api, ["a.spec.ts"])
    await api.submit(app_version_id="v2")
    job = claim["jobs"][0]["id"]
    await api.call("POST", _path(agent_id, claim), {"token": claim["token"], "started": [{"job_id": job}]})
    last = {"token": claim["token"], "results": [{"job_id": job, "exit_code": 0}], "then_claim": True}
    answer = await api.call("POST", _path(agent_id, claim), last)
    assert [j["status"] for j in answer["reported"]] == ["completed"]
    assert answer["group_done"] is True
    assert answer["next"]["app_version_id"] == "v2"


@pytest.mark.parametrize("closing", [True, False], ids=["closing the group", "extending its lease"])
async def test_a_report_writes_its_group_row_once_and_checks_no_foreign_key(
    api: Api, settings: Settings, closing: bool
) -> None:
    """Every report holds its claim without writing the group's row and writes it once at the end: closed, or its
    lease extended. Writing it twice in one transaction made PostgreSQL re-check its foreign keys, locking the
    org's row (shared by all of the org's agents) FOR KEY SHARE on every finished group (migration 0011)."""
    agent_id, claim = await _group_of(api, ["a.spec.ts", "b.spec.ts"])
    runs = [
        {"id": j["id"], "elapsed_ms": 5, "outcome": "passed", "exit_code": 0, "duration_ms": 5, "output_tail": ""}
        for j in claim["jobs"][: None if closing else 1]
    ]
    held = {"agent_id": agent_id, "group_id": claim["group_id"], "token": claim["token"]}
    assert settings.database_url is not None
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        holding = plans_inside(conn, P.hold_claim, held, analyze=True)
        plans = plans_inside(conn, P.report_runs, {**held, "lease_seconds": 30.0, "runs": json.dumps(runs)}, True)
    assert _group_rows_written(holding) == 0
    assert not [plan["Query Text"] for plan in plans if "FOR KEY SHARE" in plan["Query Text"]]  # the FK checks
    assert _group_rows_written(plans) == 1
    extended = [plan for plan in plans if "SET lease_expires_at = now() +" in plan["Query Text"]]
    assert len(extended) == (0 if closing else 1)


def _group_rows_written(plans: list[dict[str, Any]]) -> int:
    """Rows of job_groups the statements updated or inserted: what each ModifyTable node was fed."""
    nodes = [plan["Plan"] for plan in plans]
    writes = [n for n in nodes if n["Node Type"] == "ModifyTable" and n["Relation Name"] == "job_groups"]
    return int(sum(w["Plans"][0]["Actual Rows"] for w in writes))
