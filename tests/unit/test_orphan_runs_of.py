"""What a refused report's runs are recorded as (qualgent.server.queue.orphans.runs_of): one run per job."""

from __future__ import annotations

import uuid

from qualgent.domain import Outcome
from qualgent.server.queue.orphans import UNKNOWN_RESULT, runs_of


def test_a_run_retried_within_itself_is_recorded_by_its_last_result() -> None:
    job = uuid.uuid4()
    # an AppWright run: a failed try, retried by Playwright in the same run, then passed
    runs = runs_of([(job, 900)], [(job, 1, 400, "expect failed", None), (job, 0, 450, None, None)])
    assert len(runs) == 1
    assert (runs[0].outcome, runs[0].exit_code, runs[0].started_ms_ago) == (Outcome.PASSED, 0, 900)


def test_a_start_without_a_result_is_an_infrastructure_error() -> None:
    job, other = uuid.uuid4(), uuid.uuid4()
    runs = {run.job_id: run for run in runs_of([(job, 50), (other, 70)], [(other, 3, 10, "device lost", None)])}
    assert (runs[job].outcome, runs[job].error) == (Outcome.INFRA_ERROR, UNKNOWN_RESULT)
    assert runs[other].outcome == Outcome.INFRA_ERROR
    assert runs[other].error == "device lost"
