"""reporting: views for analysts (org success rates, flaky tests, app versions) and the indexes they need

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:40:00.000000

Each aggregate is a SQL function over a time window, `reporting.<name>_between(since, until)`, and a view of
the same name without the suffix over all time. The functions are plain `LANGUAGE sql STABLE` single
SELECTs, so PostgreSQL inlines them: a filter on a view's org_id reaches the jobs index. docs/reporting.md
documents the columns and has example queries; tests/perf/reporting_bench.py times them on a million jobs.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINAL = "status IN ('completed', 'failed', 'cancelled')"
TEST_RUN = "outcome IN ('passed', 'test_failed')"

# One row per finished job. The queue wait is from submission to the job's first start: for a job that
# started once, jobs.started_at is that start (start_job sets it and opens attempt 1 in one transaction,
# so both read the same now()); only jobs started more than once look up attempt 1.
FINISHED_JOBS = f"""
CREATE VIEW reporting.finished_jobs AS
SELECT j.id AS job_id, j.org_id, o.tier, j.app_version_id, j.target, j.test_path, j.priority, j.status,
       j.attempts, j.exit_code,
       j.duration_ms / 1000.0::float8 AS duration_seconds,
       EXTRACT(EPOCH FROM s.first_started_at - j.created_at)::float8 AS queue_wait_seconds,
       j.created_at, s.first_started_at, j.finished_at
FROM jobs j
JOIN orgs o ON o.id = j.org_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN j.attempts <= 1 THEN j.started_at
                ELSE (SELECT a.started_at FROM attempts a WHERE a.job_id = j.id AND a.number = 1) END
) AS s (first_started_at)
WHERE j.{FINAL}
"""

# success_rate = completed / (completed + failed): a cancelled job says nothing about the app.
ORG_SUCCESS_RATES = """
CREATE FUNCTION reporting.org_success_rates_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS TABLE (org_id text, tier org_tier, finished bigint, completed bigint, failed bigint, cancelled bigint,
               success_rate float8, median_duration_seconds float8, median_queue_wait_seconds float8,
               p95_queue_wait_seconds float8, last_finished_at timestamptz)
LANGUAGE sql STABLE
AS $$
SELECT s.org_id, o.tier, s.finished, s.completed, s.failed, s.cancelled,
       round(s.completed::numeric / NULLIF(s.completed + s.failed, 0), 4)::float8,
       s.median_duration_seconds, s.waits[1], s.waits[2], s.last_finished_at
FROM (
    SELECT f.org_id, count(*) AS finished,
           count(*) FILTER (WHERE f.status = 'completed') AS completed,
           count(*) FILTER (WHERE f.status = 'failed') AS failed,
           count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY f.duration_seconds) AS median_duration_seconds,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY f.queue_wait_seconds) AS waits,
           max(f.finished_at) AS last_finished_at
    FROM reporting.finished_jobs f
    WHERE f.finished_at >= COALESCE(since, '-infinity') AND f.finished_at < COALESCE(until, 'infinity')
    GROUP BY f.org_id
) AS s
JOIN orgs o ON o.id = s.org_id
$$
"""

# A run is an attempt that reached a test verdict (passed or test_failed; infrastructure errors and
# cancels are not verdicts). A pass after a failure is a pass whose previous run of the same test, on the
# same app version and target, failed: same code, different verdict. Tests that never failed are left out.
FLAKY_TESTS = f"""
CREATE FUNCTION reporting.flaky_tests_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS TABLE (org_id text, test_path text, runs bigint, failures bigint, passes_after_failure bigint,
               flake_rate float8, failure_rate float8, app_versions bigint, last_failure_at timestamptz)
LANGUAGE sql STABLE
AS $$
SELECT r.org_id, r.test_path, count(*),
       count(*) FILTER (WHERE r.outcome = 'test_failed'),
       count(*) FILTER (WHERE r.outcome = 'passed' AND r.previous = 'test_failed'),
       round(count(*) FILTER (WHERE r.outcome = 'passed' AND r.previous = 'test_failed')::numeric / count(*), 4)::float8,
       round(count(*) FILTER (WHERE r.outcome = 'test_failed')::numeric / count(*), 4)::float8,
       count(DISTINCT r.app_version_id),
       max(r.finished_at) FILTER (WHERE r.outcome = 'test_failed')
FROM (
    SELECT j.org_id, j.test_path, j.app_version_id, a.outcome, a.finished_at,
           lag(a.outcome) OVER (PARTITION BY j.org_id, j.test_path, j.app_version_id, j.target
                                ORDER BY a.finished_at, a.id) AS previous
    FROM attempts a
    JOIN jobs j ON j.id = a.job_id
    WHERE a.{TEST_RUN}
      AND a.finished_at >= COALESCE(since, '-infinity') AND a.finished_at < COALESCE(until, 'infinity')
) AS r
GROUP BY r.org_id, r.test_path
HAVING count(*) FILTER (WHERE r.outcome = 'test_failed') > 0
$$
"""

# Per app version: its finished jobs, and the groups that ran it. An install happens once per group an
# agent ran; install_seconds is the time from the claim to the group's first test start (the install and
# the agent's set-up), test_seconds the sum of every attempt's run time, retries included.
APP_VERSIONS = f"""
CREATE FUNCTION reporting.app_versions_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS TABLE (org_id text, app_version_id text, tests bigint, finished bigint, passed bigint, failed bigint,
               cancelled bigint, pass_rate float8, installs bigint, install_seconds float8, test_seconds float8,
               first_submitted_at timestamptz, last_finished_at timestamptz)
LANGUAGE sql STABLE
AS $$
SELECT j.org_id, j.app_version_id, j.tests, j.finished, j.passed, j.failed, j.cancelled,
       round(j.passed::numeric / NULLIF(j.passed + j.failed, 0), 4)::float8,
       COALESCE(g.installs, 0), COALESCE(g.install_seconds, 0), COALESCE(g.test_seconds, 0),
       j.first_submitted_at, j.last_finished_at
FROM (
    SELECT t.org_id, t.app_version_id, count(*) AS tests, sum(t.finished)::bigint AS finished,
           sum(t.passed)::bigint AS passed, sum(t.failed)::bigint AS failed, sum(t.cancelled)::bigint AS cancelled,
           min(t.first_submitted_at) AS first_submitted_at, max(t.last_finished_at) AS last_finished_at
    FROM (
        SELECT f.org_id, f.app_version_id, f.test_path, count(*) AS finished,
               count(*) FILTER (WHERE f.status = 'completed') AS passed,
               count(*) FILTER (WHERE f.status = 'failed') AS failed,
               count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
               min(f.created_at) AS first_submitted_at, max(f.finished_at) AS last_finished_at
        FROM jobs f
        WHERE f.{FINAL}
          AND f.finished_at >= COALESCE(since, '-infinity') AND f.finished_at < COALESCE(until, 'infinity')
        GROUP BY f.org_id, f.app_version_id, f.test_path
    ) AS t
    GROUP BY t.org_id, t.app_version_id
) AS j
LEFT JOIN (
    SELECT r.org_id, r.app_version_id, count(*) AS installs,
           sum(EXTRACT(EPOCH FROM r.first_started_at - r.claimed_at))::float8 AS install_seconds,
           sum(r.test_ms) / 1000.0::float8 AS test_seconds
    FROM (
        SELECT gr.org_id, gr.app_version_id, gr.claimed_at, min(a.started_at) AS first_started_at,
               sum(a.duration_ms) AS test_ms
        FROM job_groups gr
        JOIN attempts a ON a.group_id = gr.id
        WHERE gr.claimed_at >= COALESCE(since, '-infinity') AND gr.claimed_at < COALESCE(until, 'infinity')
        GROUP BY gr.id
    ) AS r
    GROUP BY r.org_id, r.app_version_id
) AS g ON g.org_id = j.org_id AND g.app_version_id = j.app_version_id
$$
"""

VIEWS = {
    "org_success_rates": "Per org: jobs by final status, success rate = completed / (completed + failed), "
    "median test duration, median and p95 queue wait (seconds). Windowed: org_success_rates_between(since, until).",
    "flaky_tests": "Per org and test path that failed at least once: runs (passed or test_failed attempts), "
    "failures, passes right after a failure on the same app version and target, flake rate = those / runs. "
    "Windowed: flaky_tests_between(since, until).",
    "app_versions": "Per org and app version: distinct tests, finished jobs by status, pass rate, installs "
    "(groups run), install and test seconds. Windowed: app_versions_between(since, until).",
}


def upgrade() -> None:
    # Time windows and recent results read finished jobs (and test runs) by when they finished;
    # the app-version summary reads a group's attempts.
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"], postgresql_where=FINAL)
    op.create_index("ix_attempts_finished_at", "attempts", ["finished_at"], postgresql_where=TEST_RUN)
    op.create_index("ix_attempts_group_id", "attempts", ["group_id"])
    op.execute("CREATE SCHEMA reporting")
    op.execute("COMMENT ON SCHEMA reporting IS 'qualgent reporting views for analysts: docs/reporting.md'")
    op.execute(FINISHED_JOBS)
    op.execute(
        "COMMENT ON VIEW reporting.finished_jobs IS 'One row per finished job, with its duration and its queue "
        "wait (submission to first start), in seconds.'"
    )
    for create in (ORG_SUCCESS_RATES, FLAKY_TESTS, APP_VERSIONS):
        op.execute(create)
    for name, comment in VIEWS.items():
        op.execute(f"CREATE VIEW reporting.{name} AS SELECT * FROM reporting.{name}_between()")
        op.execute(f"COMMENT ON VIEW reporting.{name} IS '{comment}'")


def downgrade() -> None:
    op.execute("DROP SCHEMA reporting CASCADE")
    op.drop_index("ix_attempts_group_id", table_name="attempts")
    op.drop_index("ix_attempts_finished_at", table_name="attempts", postgresql_where=TEST_RUN)
    op.drop_index("ix_jobs_finished_at", table_name="jobs", postgresql_where=FINAL)
