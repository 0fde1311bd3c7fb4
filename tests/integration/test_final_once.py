"""A job reaches a final state once (issue 20, finding 3): a second result for a job, in the same progress report or
in a later one, is refused and never applied, whichever order the results come in. Spoken to over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from qualgent.server.db.database import Database
from qualgent.server.queue import claims
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings
from tests.integration.conftest import Api

pytestmark = pytest.mark.anyio


async def _claimed(api: Api, tests: list[str], **extra: Any) -> tuple[str, dict[str, Any], list[str]]:
    for path in tests:
        await api.submit(test_path=path, **extra)
    agent_id = await api.register()
    claim = await api.claim(agent_id)
    assert claim is not None
    return agent_id, claim, [j["id"] for j in claim["jobs"]]


def _path(agent_id: str, claim: dict[str, Any]) -> str:
    return f"/agents/{agent_id}/groups/{claim['group_id']}/progress"


async def _job(api: Api, job_id: str) -> dict[str, Any]:
    return await api.call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]


async def test_passed_then_infra_error_in_one_report_completes_once(api: Api) -> None:
    agent_id, claim, (job, other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    path = _path(agent_id, claim)
    await api.call("POST", path, {"token": claim["token"], "started": [{"job_id": job}]})
    answer = await api.call(
        "POST",
        path,
        {"token": claim["token"], "results": [{"job_id": job, "exit_code": 0}, {"job_id": job, "exit_code": 3}]},
    )
    assert [(j["id"], j["status"]) for j in answer["reported"]] == [(job, "completed")]
    assert [(r["job_id"], r["status"]) for r in answer["refused"]] == [(job, "completed")]
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == ("completed", 1, 0)
    assert [a["outcome"] for a in after["attempt_history"]] == ["passed"]
    # nothing of it went back to the queue: another agent finds no work but the group's other job, still held
    assert await api.claim(await api.register("second"), expect=204) is None
    assert (await _job(api, other))["status"] == "pending"


async def test_infra_error_then_passed_in_one_report_keeps_the_first(api: Api) -> None:
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    path = _path(agent_id, claim)
    await api.call("POST", path, {"token": claim["token"], "started": [{"job_id": job}]})
    answer = await api.call(
        "POST",
        path,
        {"token": claim["token"], "results": [{"job_id": job, "exit_code": 3}, {"job_id": job, "exit_code": 0}]},
    )
    assert [(j["id"], j["status"]) for j in answer["reported"]] == [(job, "pending")]  # retried, as the 3 says
    assert [(r["job_id"], r["status"]) for r in answer["refused"]] == [(job, "pending")]
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == ("pending", 1, 3)
    assert [a["outcome"] for a in after["attempt_history"]] == ["infra_error"]


async def test_a_final_failure_then_a_pass_in_one_report_stays_failed(api: Api) -> None:
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"], max_attempts=1)
    path = _path(agent_id, claim)
    await api.call("POST", path, {"token": claim["token"], "started": [{"job_id": job}]})
    answer = await api.call(
        "POST",
        path,
        {"token": claim["token"], "results": [{"job_id": job, "exit_code": 3}, {"job_id": job, "exit_code": 0}]},
    )
    assert [(r["job_id"], r["status"]) for r in answer["refused"]] == [(job, "failed")]
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == ("failed", 1, 3)
    assert after["finished_at"] is not None


@pytest.mark.parametrize(("first", "second"), [(0, 3), (3, 0), (1, 0)])
async def test_a_run_reported_whole_twice_in_one_report(api: Api, first: int, second: int) -> None:
    """Started and ended within the report, twice over (the one-statement path's shape)."""
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    body = {
        "token": claim["token"],
        "started": [{"job_id": job}, {"job_id": job}],
        "results": [{"job_id": job, "exit_code": first}, {"job_id": job, "exit_code": second}],
    }
    answer = await api.call("POST", _path(agent_id, claim), body)
    assert [r["job_id"] for r in answer["refused"]] == [job]
    after = await _job(api, job)
    assert after["result"]["exit_code"] == first
    assert after["attempts"] == 1
    assert len(after["attempt_history"]) == 1
    expected = {0: "completed", 1: "failed", 3: "pending"}[first]
    assert after["status"] == expected


@pytest.mark.parametrize("late", [3, 0])
async def test_a_result_in_a_later_report_for_a_final_job_is_refused(api: Api, late: int) -> None:
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"], max_attempts=1)
    path, token = _path(agent_id, claim), claim["token"]
    first = 1 if late == 0 else 0
    body = {"token": token, "started": [{"job_id": job}], "results": [{"job_id": job, "exit_code": first}]}
    await api.call("POST", path, body)
    final = "failed" if first else "completed"
    answer = await api.call("POST", path, {"token": token, "results": [{"job_id": job, "exit_code": late}]})
    assert answer["reported"] == []
    assert [(r["job_id"], r["status"]) for r in answer["refused"]] == [(job, final)]
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == (final, 1, first)
    # the single-job route refuses it too
    ref = {"group_id": claim["group_id"], "token": token, "exit_code": late}
    await api.call("POST", f"/agents/{agent_id}/jobs/{job}/result", ref, expect=409)
    assert (await _job(api, job))["status"] == final


async def test_the_single_job_route_refuses_a_second_result(api: Api) -> None:
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    assert (await api.run(agent_id, claim, job, 0))["status"] == "completed"
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    await api.call("POST", f"/agents/{agent_id}/jobs/{job}/result", {**ref, "exit_code": 3}, expect=409)
    await api.call("POST", f"/agents/{agent_id}/jobs/{job}/start", ref, expect=409)
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == ("completed", 1, 0)


@pytest.mark.parametrize("late", [0, 1, 3])
async def test_a_whole_run_reported_again_in_a_later_report_is_refused(api: Api, late: int) -> None:
    """The one-statement path's shape (started and ended within the report), for a job it already ended."""
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    path, token = _path(agent_id, claim), claim["token"]
    whole = {"token": token, "started": [{"job_id": job}], "results": [{"job_id": job, "exit_code": 0}]}
    assert [j["status"] for j in (await api.call("POST", path, whole))["reported"]] == ["completed"]
    again = {**whole, "results": [{"job_id": job, "exit_code": late}]}
    answer = await api.call("POST", path, again)
    assert answer["started"] == []
    assert answer["reported"] == []
    assert {(r["job_id"], r["status"]) for r in answer["refused"]} == {(job, "completed")}
    after = await _job(api, job)
    assert (after["status"], after["attempts"], after["result"]["exit_code"]) == ("completed", 1, 0)
    assert [a["outcome"] for a in after["attempt_history"]] == ["passed"]


@pytest.mark.parametrize("whole", [False, True])
async def test_a_result_after_a_cancel_is_refused_and_the_job_stays_cancelled(api: Api, whole: bool) -> None:
    agent_id, claim, (job, other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"])
    path, token = _path(agent_id, claim), claim["token"]
    if not whole:
        await api.call("POST", path, {"token": token, "started": [{"job_id": job}]})
    await api.call("DELETE", f"/jobs/{job}")
    report: dict[str, Any] = {"token": token, "results": [{"job_id": job, "exit_code": 0}]}
    if whole:  # the cancel came before the start: the start is refused too
        report["started"] = [{"job_id": job}]
    answer = await api.call("POST", path, report)
    assert answer["reported"] == []
    assert {(r["job_id"], r["status"]) for r in answer["refused"]} == {(job, "cancelled")}
    after = await _job(api, job)
    assert (after["status"], after["result"]) == ("cancelled", None) or after["result"]["exit_code"] is None
    assert after["status"] == "cancelled"
    assert [a["outcome"] for a in after["attempt_history"]] == ([] if whole else ["cancelled"])
    assert (await _job(api, other))["status"] == "pending"


@pytest.mark.parametrize(("max_attempts", "handed_back"), [(1, "failed"), (3, "pending")])
async def test_a_result_after_the_lease_lapsed_is_refused(
    api: Api, db_url: str, max_attempts: int, handed_back: str
) -> None:
    """The hand-back settles the interrupted run (an infrastructure error: retried, or failed on its last attempt);
    the late agent's result changes nothing of it."""
    agent_id, claim, (job, _other) = await _claimed(api, ["a.spec.ts", "b.spec.ts"], max_attempts=max_attempts)
    path, token = _path(agent_id, claim), claim["token"]
    await api.call("POST", path, {"token": token, "started": [{"job_id": job}]})
    await _lapse(db_url, claim["group_id"])
    for report in (
        {"token": token, "results": [{"job_id": job, "exit_code": 0}]},
        {"token": token, "started": [{"job_id": job}], "results": [{"job_id": job, "exit_code": 0}]},
    ):
        await api.call("POST", path, report, expect=409)
    ref = {"group_id": claim["group_id"], "token": token, "exit_code": 0}
    await api.call("POST", f"/agents/{agent_id}/jobs/{job}/result", ref, expect=409)
    after = await _job(api, job)
    assert (after["status"], after["attempts"]) == (handed_back, 1)
    assert [a["outcome"] for a in after["attempt_history"]] == ["infra_error"]


async def _lapse(db_url: str, group_id: str) -> None:
    """The claim's lease lapsed, and a server's rescue handed the group back."""
    async with Database(db_url, size=1) as db:
        await db.execute(
            "UPDATE job_groups SET lease_expires_at = now() - interval '1 second' WHERE id = %(id)s", {"id": group_id}
        )
        assert await claims.rescue_lapsed(Queue(db, Settings(database_url=db_url))) == 1
