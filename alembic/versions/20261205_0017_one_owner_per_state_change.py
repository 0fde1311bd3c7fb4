"""one owner per state change: what a run's end does to its job is decided by one function

The retry/final rule was written three times (Python's _finish and _retries, and qualgent_run_jobs) and the flaky
rule twice (finish_runs and qualgent_run_jobs, each in its own frame: `attempts > 1` on a running job counts the run
itself, `attempts > 0` on a pending one does not; both meant "an earlier attempt exists"). Now:

    qualgent_settle(job, outcome, final, attempt, max_attempts, test_retries)
                                        what the run numbered `attempt` leaves its job: 'completed', 'failed', or
                                        'pending' (retried after a backoff); the only place that decides
    qualgent_flaky(job, outcome, attempt)   whether that run makes its job flaky (passed after a test failure)
    qualgent_test_failures_before(job, attempt)   what both read of the job's earlier attempts, when they must
    qualgent_retry_delay(attempt)       the backoff before a retried job may run again
    qualgent_run_jobs(agent, group, runs)   the one-statement report's write: ends the runs qualgent_settle ends,
                                        leaves the rest (a retry) to the general path (finish_runs), which asks
                                        the same function

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 03:15:00.000000
"""

from collections.abc import Sequence

from alembic import op
from qualgent.db.migrate import revision_module

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A test failure is retried while the submission's test retries and the job's attempts last; `attempt` is the run's
# own number, so its failure is the one more than the test failures numbered below it. Plain SQL, so that PostgreSQL
# inlines it into the statements that call it: the earlier attempts are read (qualgent_test_failures_before) only
# in the branch that needs them, never for a passed run, the common case.
TEST_FAILURES_BEFORE = """
CREATE OR REPLACE FUNCTION qualgent_test_failures_before(p_job_id uuid, p_attempt integer)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
SELECT count(*) FROM attempts a WHERE a.job_id = p_job_id AND a.number < p_attempt AND a.outcome = 'test_failed'
$$
"""

SETTLE = """
CREATE OR REPLACE FUNCTION qualgent_settle(p_job_id uuid, p_outcome text, p_final boolean, p_attempt integer,
                                           p_max_attempts integer, p_test_retries integer)
RETURNS text
LANGUAGE sql STABLE
AS $$
SELECT CASE
    WHEN p_outcome = 'passed' THEN 'completed'
    WHEN COALESCE(p_final, false) OR p_attempt >= p_max_attempts THEN 'failed'
    WHEN p_outcome = 'infra_error' THEN 'pending'
    WHEN p_outcome = 'test_failed' AND p_test_retries > 0
         AND qualgent_test_failures_before(p_job_id, p_attempt) < p_test_retries THEN 'pending'
    ELSE 'failed'
END
$$
"""

# Only a passed run after an earlier attempt can make its job flaky: a first run reads nothing.
FLAKY = """
CREATE OR REPLACE FUNCTION qualgent_flaky(p_job_id uuid, p_outcome text, p_attempt integer)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
SELECT CASE WHEN p_outcome = 'passed' AND p_attempt > 1
            THEN qualgent_test_failures_before(p_job_id, p_attempt) > 0
            ELSE false END
$$
"""

# 2 s, 4 s, 8 s ... capped at 300 s, +-25% so that jobs failed together by one outage do not come back together.
RETRY_DELAY = """
CREATE OR REPLACE FUNCTION qualgent_retry_delay(p_attempt integer)
RETURNS double precision
LANGUAGE sql VOLATILE
AS $$
SELECT least(300.0, 2.0 * power(2.0, greatest(0, p_attempt - 1))) * (0.75 + random() * 0.5)
$$
"""

RUN_JOBS = """
CREATE OR REPLACE FUNCTION qualgent_run_jobs(p_agent_id uuid, p_group_id uuid, p_runs jsonb)
RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    WITH r AS (
        SELECT *
        FROM jsonb_to_recordset(p_runs) AS r (id uuid, elapsed_ms bigint, outcome text, exit_code integer,
                                              duration_ms bigint, output_tail text, error text, final boolean)
    ), ran AS (
        UPDATE jobs j
        SET status = qualgent_settle(j.id, r.outcome, r.final, j.attempts + 1, j.max_attempts, j.test_retries),
            attempts = j.attempts + 1, agent_id = p_agent_id,
            started_at = now() - make_interval(secs => r.elapsed_ms / 1000.0),
            finished_at = now(), updated_at = now(), exit_code = r.exit_code, duration_ms = r.duration_ms,
            output_tail = r.output_tail,
            error = qualgent_job_error(r.outcome, r.error, j.attempts + 1),
            flaky = qualgent_flaky(j.id, r.outcome, j.attempts + 1)
        FROM r
        WHERE j.id = r.id AND j.group_id = p_group_id AND j.status = 'pending'
          -- the run ends its job; one that retries it is the general path's (finish_runs)
          AND qualgent_settle(j.id, r.outcome, r.final, j.attempts + 1, j.max_attempts, j.test_retries) <> 'pending'
        RETURNING j AS job, r.outcome AS run_outcome, r.error AS run_error
    ), recorded AS (
        INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code,
                              duration_ms, error)
        SELECT (ran.job).id, (ran.job).attempts, p_agent_id, p_group_id, (ran.job).started_at,
               (ran.job).finished_at, ran.run_outcome, (ran.job).exit_code, (ran.job).duration_ms, ran.run_error
        FROM ran
    ), notified AS (
        SELECT qualgent_notify_org_jobs((ran.job).status, (ran.job).org_id, array_agg((ran.job).id)) AS sent
        FROM ran
        GROUP BY (ran.job).status, (ran.job).org_id
    )
    SELECT (ran.job).*
    FROM ran
    WHERE (SELECT count(*) FROM notified) >= 0;  -- read, so that it runs: a CTE that only selects runs when read
END
$$
"""

NEW = {
    "qualgent_test_failures_before(uuid, integer)": TEST_FAILURES_BEFORE,
    "qualgent_settle(uuid, text, boolean, integer, integer, integer)": SETTLE,
    "qualgent_flaky(uuid, text, integer)": FLAKY,
    "qualgent_retry_delay(integer)": RETRY_DELAY,
}


def upgrade() -> None:
    for definition in NEW.values():
        op.execute(definition)
    op.execute(RUN_JOBS)


def downgrade() -> None:
    before = revision_module("20261205_0016_job_notifications_name_their_org.py")
    op.execute(before._run_jobs(before._RUN_JOBS_NOTIFIED, before._RUN_JOBS_NOTIFIED_BY_ORG))
    for signature in reversed(NEW):
        op.execute(f"DROP FUNCTION {signature}")
