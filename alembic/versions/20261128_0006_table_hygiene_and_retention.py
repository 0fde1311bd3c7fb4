"""table hygiene (fill factors, autovacuum, HOT-friendly indexes) and retention (rollups that keep reporting true)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 20:00:00.000000

Hygiene: storage parameters and indexes of the hot tables; docs/performance.md ("Table hygiene and retention")
gives the measurements behind each setting.

Retention (qualgent/queue/retention.py, `qgjob prune`) deletes finished jobs, their attempts, done groups and
old idempotency keys once they are older than QUALGENT_RETENTION_DAYS. Before it deletes them it folds them,
in the same transaction, into the rollup tables made here, and the reporting functions of 0005 are redefined
to add the rollups to what is still in the live tables, so totals and rates over all time count pruned jobs:

    reporting.daily_job_stats       finished jobs by (org, app version, test path, target, UTC day of finish),
                                    with their test verdicts (attempts passed | test_failed)
    reporting.daily_latency         per org, metric (duration | queue_wait) and day: jobs per log bucket
    reporting.test_run_tails        the last pruned verdict of each (org, test, build, target) when it failed:
                                    the "previous run" of the first one still live (a pass after a failure)
    reporting.daily_installs        groups that ran, by (org, app version, UTC day of the claim)
    reporting.group_attempts_pruned attempts pruned (with their jobs) from a group that is still live

Medians and percentiles cannot be merged exactly: over a window that includes pruned days they are estimated
from log buckets 2^(1/8) wide (within 9%). docs/performance.md lists what is exact and what is not.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from qualgent.db.migrate import revision_module

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


AUTOVACUUM = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"
AUTOVACUUM_INSERTS = f"{AUTOVACUUM}, autovacuum_vacuum_insert_scale_factor = 0.05"
RESET_AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor"
)
RUNNING = "status = 'running'"
DONE = "status = 'done'"


def _hygiene() -> None:
    # Storage parameters apply to pages written from now on; existing pages keep theirs until rewritten.
    op.execute(f"ALTER TABLE job_groups SET (fillfactor = 70, {AUTOVACUUM})")
    op.execute("ALTER TABLE jobs RESET (fillfactor)")
    op.execute(f"ALTER TABLE jobs SET ({AUTOVACUUM_INSERTS})")
    op.execute(f"ALTER TABLE attempts SET ({AUTOVACUUM_INSERTS})")
    op.execute("ALTER TABLE agents SET (fillfactor = 50)")
    # A lease extension (every heartbeat, every job start) changed an indexed column and could never be a
    # HOT update; running groups are few (one per busy agent), so rescue reads them all by this index.
    op.drop_index("ix_job_groups_lease", table_name="job_groups", postgresql_where=sa.text(RUNNING))
    op.create_index("ix_job_groups_running", "job_groups", ["agent_id"], postgresql_where=sa.text(RUNNING))
    op.create_index("ix_job_groups_finished_at", "job_groups", ["finished_at"], postgresql_where=sa.text(DONE))
    op.create_index("ix_jobs_group_id", "jobs", ["group_id"])


def _hygiene_undone() -> None:
    op.drop_index("ix_jobs_group_id", table_name="jobs")
    op.drop_index("ix_job_groups_finished_at", table_name="job_groups", postgresql_where=sa.text(DONE))
    op.drop_index("ix_job_groups_running", table_name="job_groups", postgresql_where=sa.text(RUNNING))
    op.create_index("ix_job_groups_lease", "job_groups", ["lease_expires_at"], postgresql_where=sa.text(RUNNING))
    op.execute("ALTER TABLE agents RESET (fillfactor)")
    op.execute(f"ALTER TABLE attempts RESET ({RESET_AUTOVACUUM})")
    op.execute(f"ALTER TABLE jobs RESET ({RESET_AUTOVACUUM})")
    op.execute("ALTER TABLE jobs SET (fillfactor = 70)")
    op.execute("ALTER TABLE job_groups RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)")


FINAL = "status IN ('completed', 'failed', 'cancelled')"
TEST_RUN = "outcome IN ('passed', 'test_failed')"
# A rollup day counts in a window [since, until) when the day's start (UTC) does.
DAY_IN_WINDOW = (
    "reporting.day_start({d}.day) >= COALESCE(since, '-infinity') "
    "AND reporting.day_start({d}.day) < COALESCE(until, 'infinity')"
)

ROLLUPS = """
CREATE TABLE reporting.daily_job_stats (
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    test_path text NOT NULL,
    target text NOT NULL,
    day date NOT NULL,
    finished bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    cancelled bigint NOT NULL,
    flaky bigint NOT NULL,
    attempts bigint NOT NULL,
    durations bigint NOT NULL,
    duration_seconds float8 NOT NULL,
    queue_waits bigint NOT NULL,
    queue_wait_seconds float8 NOT NULL,
    first_submitted_at timestamptz NOT NULL,
    last_finished_at timestamptz NOT NULL,
    test_runs bigint NOT NULL DEFAULT 0,
    test_failures bigint NOT NULL DEFAULT 0,
    passes_after_failure bigint NOT NULL DEFAULT 0,
    last_failure_at timestamptz,
    CONSTRAINT pk_daily_job_stats PRIMARY KEY (org_id, app_version_id, test_path, target, day)
);
CREATE TABLE reporting.daily_latency (
    org_id text NOT NULL,
    metric text NOT NULL CONSTRAINT ck_daily_latency_metric CHECK (metric IN ('duration', 'queue_wait')),
    day date NOT NULL,
    bucket integer NOT NULL,
    jobs bigint NOT NULL,
    CONSTRAINT pk_daily_latency PRIMARY KEY (org_id, metric, day, bucket)
);
CREATE TABLE reporting.test_run_tails (
    org_id text NOT NULL,
    test_path text NOT NULL,
    app_version_id text NOT NULL,
    target text NOT NULL,
    last_outcome text NOT NULL,
    last_finished_at timestamptz NOT NULL,
    CONSTRAINT pk_test_run_tails PRIMARY KEY (org_id, test_path, app_version_id, target)
);
CREATE TABLE reporting.daily_installs (
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    day date NOT NULL,
    installs bigint NOT NULL,
    install_seconds float8 NOT NULL,
    test_seconds float8 NOT NULL,
    CONSTRAINT pk_daily_installs PRIMARY KEY (org_id, app_version_id, day)
);
CREATE TABLE reporting.group_attempts_pruned (
    group_id uuid NOT NULL CONSTRAINT pk_group_attempts_pruned PRIMARY KEY,
    first_started_at timestamptz NOT NULL,
    test_ms bigint
);
"""

TABLE_COMMENTS = {
    "daily_job_stats": "Pruned finished jobs, by org, app version, test path, target and UTC day of finish: "
    "counts by final status, flaky, attempts, duration and queue wait sums (seconds) and counts; their test "
    "verdicts (attempts passed or test_failed): runs, failures, passes right after a failure, last failure.",
    "daily_latency": "Pruned finished jobs per org, metric (duration | queue_wait) and UTC day: how many fell "
    "in each log bucket (reporting.bucket_value gives its bounds); the median and p95 of windows with pruned days.",
    "test_run_tails": "The last pruned verdict of each org, test path, app version and target, when it was a "
    "failure: the previous run of the first verdict still live.",
    "daily_installs": "Pruned groups that ran, by org, app version and UTC day of the claim: installs, install "
    "and test seconds.",
    "group_attempts_pruned": "Attempts pruned with their jobs from a group that is still live: its earliest "
    "start and their run time, until the group is pruned too.",
}

HELPERS = """
CREATE FUNCTION reporting.day_start(day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT day::timestamp AT TIME ZONE 'UTC' $$;

-- Log buckets for latencies in seconds: bucket 0 is [0, 1 ms), bucket k >= 1 is
-- [1 ms * 2^((k-1)/8), 1 ms * 2^(k/8)): each 9% wide, from a millisecond to years.
CREATE FUNCTION reporting.latency_bucket(seconds float8) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN seconds < 0.001 THEN 0 ELSE 1 + floor(8 * ln(seconds / 0.001) / ln(2))::integer END $$;

-- A value inside a bucket: fraction 0 is its lower bound, 1 its upper bound (log-linear in between).
CREATE FUNCTION reporting.bucket_value(bucket integer, fraction float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN bucket <= 0 THEN 0.001 * fraction ELSE 0.001 * 2 ^ ((bucket - 1 + fraction) / 8) END $$;

-- The median duration, median and p95 queue wait of one org's jobs in a window that includes pruned days:
-- the live jobs are put in the same buckets as the pruned ones; the i-th value (in order) is estimated
-- inside the bucket that holds it, and each percentile interpolates between the values on either side of
-- its rank p * (n - 1), as percentile_cont does.
CREATE FUNCTION reporting.latency_percentiles(org text, since timestamptz, until timestamptz) RETURNS float8[]
LANGUAGE sql STABLE
AS $$
WITH buckets AS (
    SELECT x.metric, x.bucket, sum(x.jobs) AS jobs
    FROM (
        SELECT d.metric, d.bucket, d.jobs
        FROM reporting.daily_latency d
        WHERE d.org_id = org AND {day_in_window}
        UNION ALL
        SELECT m.metric, reporting.latency_bucket(m.seconds), 1
        FROM reporting.finished_jobs f
        CROSS JOIN LATERAL (VALUES ('duration', f.duration_seconds), ('queue_wait', f.queue_wait_seconds))
            AS m (metric, seconds)
        WHERE f.org_id = org AND m.seconds IS NOT NULL
          AND f.finished_at >= COALESCE(since, '-infinity') AND f.finished_at < COALESCE(until, 'infinity')
    ) AS x
    GROUP BY x.metric, x.bucket
), ranked AS (
    SELECT b.metric, b.bucket, b.jobs,
           sum(b.jobs) OVER (PARTITION BY b.metric ORDER BY b.bucket) - b.jobs AS below,
           sum(b.jobs) OVER (PARTITION BY b.metric) AS total
    FROM buckets b
), wanted AS (
    SELECT w.position, w.metric, w.p * (t.total - 1) AS rank, floor(w.p * (t.total - 1)) AS below_rank,
           ceil(w.p * (t.total - 1)) AS above_rank
    FROM (VALUES (1, 'duration', 0.5::float8), (2, 'queue_wait', 0.5), (3, 'queue_wait', 0.95))
        AS w (position, metric, p)
    LEFT JOIN (SELECT b.metric, sum(b.jobs) AS total FROM buckets b GROUP BY b.metric) AS t ON t.metric = w.metric
)
SELECT array_agg(e.low + (w.rank - w.below_rank) * (e.high - e.low) ORDER BY w.position)
FROM wanted w
CROSS JOIN LATERAL (
    SELECT (SELECT reporting.bucket_value(r.bucket, (w.below_rank - r.below + 0.5) / r.jobs)
            FROM ranked r
            WHERE r.metric = w.metric AND r.below <= w.below_rank AND w.below_rank < r.below + r.jobs) AS low,
           (SELECT reporting.bucket_value(r.bucket, (w.above_rank - r.below + 0.5) / r.jobs)
            FROM ranked r
            WHERE r.metric = w.metric AND r.below <= w.above_rank AND w.above_rank < r.below + r.jobs) AS high
) AS e
$$;
""".format(day_in_window=DAY_IN_WINDOW.format(d="d"))

# 0005's functions, with the rollups added to the live rows. Same names, arguments and columns.
ORG_SUCCESS_RATES = f"""
CREATE OR REPLACE FUNCTION reporting.org_success_rates_between(
    since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS TABLE (org_id text, tier org_tier, finished bigint, completed bigint, failed bigint, cancelled bigint,
               success_rate float8, median_duration_seconds float8, median_queue_wait_seconds float8,
               p95_queue_wait_seconds float8, last_finished_at timestamptz)
LANGUAGE sql STABLE
AS $$
SELECT s.org_id, o.tier, s.finished, s.completed, s.failed, s.cancelled,
       round(s.completed::numeric / NULLIF(s.completed + s.failed, 0), 4)::float8,
       CASE WHEN s.pruned THEN m.p[1] ELSE s.median_duration_seconds END,
       CASE WHEN s.pruned THEN m.p[2] ELSE s.waits[1] END,
       CASE WHEN s.pruned THEN m.p[3] ELSE s.waits[2] END,
       s.last_finished_at
FROM (
    SELECT u.org_id, sum(u.finished)::bigint AS finished, sum(u.completed)::bigint AS completed,
           sum(u.failed)::bigint AS failed, sum(u.cancelled)::bigint AS cancelled,
           max(u.median_duration_seconds) AS median_duration_seconds, max(u.waits) AS waits,
           bool_or(u.pruned) AS pruned, max(u.last_finished_at) AS last_finished_at
    FROM (
        SELECT f.org_id, count(*) AS finished,
               count(*) FILTER (WHERE f.status = 'completed') AS completed,
               count(*) FILTER (WHERE f.status = 'failed') AS failed,
               count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY f.duration_seconds) AS median_duration_seconds,
               percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY f.queue_wait_seconds) AS waits,
               max(f.finished_at) AS last_finished_at, false AS pruned
        FROM reporting.finished_jobs f
        WHERE f.finished_at >= COALESCE(since, '-infinity') AND f.finished_at < COALESCE(until, 'infinity')
        GROUP BY f.org_id
        UNION ALL
        SELECT d.org_id, sum(d.finished), sum(d.completed), sum(d.failed), sum(d.cancelled), NULL, NULL,
               max(d.last_finished_at), true
        FROM reporting.daily_job_stats d
        WHERE {DAY_IN_WINDOW.format(d="d")}
        GROUP BY d.org_id
    ) AS u
    GROUP BY u.org_id
) AS s
JOIN orgs o ON o.id = s.org_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.pruned THEN reporting.latency_percentiles(s.org_id, since, until) END AS p
) AS m
$$
"""

# The previous run of the first live verdict of a (test, build, target) is the last pruned one, when that is
# inside the window: lag()'s default, so a pass right after a pruned failure still counts.
FLAKY_TESTS = f"""
CREATE OR REPLACE FUNCTION reporting.flaky_tests_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS TABLE (org_id text, test_path text, runs bigint, failures bigint, passes_after_failure bigint,
               flake_rate float8, failure_rate float8, app_versions bigint, last_failure_at timestamptz)
LANGUAGE sql STABLE
AS $$
SELECT r.org_id, r.test_path, sum(r.runs)::bigint, sum(r.failures)::bigint, sum(r.passes_after_failure)::bigint,
       round(sum(r.passes_after_failure) / sum(r.runs), 4)::float8,
       round(sum(r.failures) / sum(r.runs), 4)::float8,
       count(DISTINCT r.app_version_id),
       max(r.last_failure_at)
FROM (
    SELECT q.org_id, q.test_path, q.app_version_id, count(*) AS runs,
           count(*) FILTER (WHERE q.outcome = 'test_failed') AS failures,
           count(*) FILTER (WHERE q.outcome = 'passed' AND q.previous = 'test_failed') AS passes_after_failure,
           max(q.finished_at) FILTER (WHERE q.outcome = 'test_failed') AS last_failure_at
    FROM (
        SELECT j.org_id, j.test_path, j.app_version_id, a.outcome, a.finished_at,
               lag(a.outcome, 1, t.last_outcome) OVER (PARTITION BY j.org_id, j.test_path, j.app_version_id, j.target
                                                       ORDER BY a.finished_at, a.id) AS previous
        FROM attempts a
        JOIN jobs j ON j.id = a.job_id
        LEFT JOIN reporting.test_run_tails t
               ON t.org_id = j.org_id AND t.test_path = j.test_path AND t.app_version_id = j.app_version_id
              AND t.target = j.target
              AND t.last_finished_at >= COALESCE(since, '-infinity') AND t.last_finished_at < COALESCE(until, 'infinity')
        WHERE a.{TEST_RUN}
          AND a.finished_at >= COALESCE(since, '-infinity') AND a.finished_at < COALESCE(until, 'infinity')
    ) AS q
    GROUP BY q.org_id, q.test_path, q.app_version_id
    UNION ALL
    SELECT d.org_id, d.test_path, d.app_version_id, sum(d.test_runs), sum(d.test_failures),
           sum(d.passes_after_failure), max(d.last_failure_at)
    FROM reporting.daily_job_stats d
    WHERE d.test_runs > 0 AND {DAY_IN_WINDOW.format(d="d")}
    GROUP BY d.org_id, d.test_path, d.app_version_id
) AS r
GROUP BY r.org_id, r.test_path
HAVING sum(r.failures) > 0
$$
"""

# A live group's attempts include those pruned from it already (group_attempts_pruned).
APP_VERSIONS = f"""
CREATE OR REPLACE FUNCTION reporting.app_versions_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
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
        SELECT u.org_id, u.app_version_id, u.test_path, sum(u.finished) AS finished, sum(u.passed) AS passed,
               sum(u.failed) AS failed, sum(u.cancelled) AS cancelled,
               min(u.first_submitted_at) AS first_submitted_at, max(u.last_finished_at) AS last_finished_at
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
            UNION ALL
            SELECT d.org_id, d.app_version_id, d.test_path, sum(d.finished), sum(d.completed), sum(d.failed),
                   sum(d.cancelled), min(d.first_submitted_at), max(d.last_finished_at)
            FROM reporting.daily_job_stats d
            WHERE {DAY_IN_WINDOW.format(d="d")}
            GROUP BY d.org_id, d.app_version_id, d.test_path
        ) AS u
        GROUP BY u.org_id, u.app_version_id, u.test_path
    ) AS t
    GROUP BY t.org_id, t.app_version_id
) AS j
LEFT JOIN (
    SELECT v.org_id, v.app_version_id, sum(v.installs)::bigint AS installs,
           sum(v.install_seconds)::float8 AS install_seconds, sum(v.test_seconds)::float8 AS test_seconds
    FROM (
        SELECT r.org_id, r.app_version_id, count(*) AS installs,
               sum(EXTRACT(EPOCH FROM r.first_started_at - r.claimed_at))::float8 AS install_seconds,
               sum(r.test_ms) / 1000.0::float8 AS test_seconds
        FROM (
            SELECT gr.org_id, gr.app_version_id, gr.claimed_at, min(a.started_at) AS first_started_at,
                   sum(a.duration_ms) AS test_ms
            FROM job_groups gr
            JOIN (
                SELECT x.group_id, x.started_at, x.duration_ms FROM attempts x
                UNION ALL
                SELECT p.group_id, p.first_started_at, p.test_ms FROM reporting.group_attempts_pruned p
            ) AS a ON a.group_id = gr.id
            WHERE gr.claimed_at >= COALESCE(since, '-infinity') AND gr.claimed_at < COALESCE(until, 'infinity')
            GROUP BY gr.id
        ) AS r
        GROUP BY r.org_id, r.app_version_id
        UNION ALL
        SELECT d.org_id, d.app_version_id, sum(d.installs), sum(d.install_seconds), sum(d.test_seconds)
        FROM reporting.daily_installs d
        WHERE {DAY_IN_WINDOW.format(d="d")}
        GROUP BY d.org_id, d.app_version_id
    ) AS v
    GROUP BY v.org_id, v.app_version_id
) AS g ON g.org_id = j.org_id AND g.app_version_id = j.app_version_id
$$
"""

MADE_HERE = (
    "TABLE reporting.daily_job_stats, reporting.daily_latency, reporting.test_run_tails, "
    "reporting.daily_installs, reporting.group_attempts_pruned"
)
HELPERS_MADE_HERE = (
    "FUNCTION reporting.latency_percentiles(text, timestamptz, timestamptz), "
    "reporting.bucket_value(integer, float8), reporting.latency_bucket(float8), reporting.day_start(date)"
)


def _rollups() -> None:
    op.execute(ROLLUPS)
    for table, comment in TABLE_COMMENTS.items():
        op.execute(f"COMMENT ON TABLE reporting.{table} IS '{comment}'")
    op.execute(HELPERS)
    for create in (ORG_SUCCESS_RATES, FLAKY_TESTS, APP_VERSIONS):
        op.execute(create)


def _rollups_undone() -> None:
    """Back to 0005's reporting: the functions read the live tables only (what was pruned is forgotten)."""
    before = revision_module("20261128_0005_reporting_views.py")
    for create in (before.ORG_SUCCESS_RATES, before.FLAKY_TESTS, before.APP_VERSIONS):
        op.execute(create.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(f"DROP {HELPERS_MADE_HERE}")
    op.execute(f"DROP {MADE_HERE}")


def upgrade() -> None:
    _hygiene()
    _rollups()


def downgrade() -> None:
    _rollups_undone()
    _hygiene_undone()
