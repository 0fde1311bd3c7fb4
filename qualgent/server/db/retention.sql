-- Retention: what qualgent.server.queue.retention runs to fold old finished work into the reporting rollups
-- (the reporting schema) and delete it, one bounded batch per transaction. Parsed by qualgent/server/db/sql.py like
-- queries.sql. Days are UTC days. Bind parameters are :name; casts are written CAST(... AS ...).

-- name: try_prune_lock
-- One pruner at a time (servers and `qgjob prune`): the rollups' "previous run" needs batches in order.
SELECT pg_try_advisory_xact_lock(hashtext('qualgent.prune'));

-- name: prune_lock
SELECT pg_advisory_xact_lock(hashtext('qualgent.prune'));

-- name: prunable_jobs
-- Oldest first, by ix_jobs_finished_at; a job someone is touching right now (a re-run) is left for later.
SELECT id
FROM jobs
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff
ORDER BY finished_at
LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: fold_jobs
-- Jobs by (org, app version, test path, target, UTC day of finish), with their test verdicts (attempts passed
-- or test_failed). reporting.flaky_tests' "pass right after a failure" is worked out as it would be live: the
-- previous run of the first one in this batch is the last one pruned before, when that failed (test_run_tails,
-- kept up to date here too).
WITH runs AS (
    SELECT j.org_id, j.app_version_id, j.test_path, j.target, CAST(j.finished_at AT TIME ZONE 'UTC' AS date) AS day,
           a.job_id, a.number, a.outcome, a.started_at, a.finished_at,
           lag(a.outcome, 1, t.last_outcome) OVER (PARTITION BY j.org_id, j.test_path, j.app_version_id, j.target
                                                   ORDER BY a.finished_at, a.started_at, a.number, a.job_id)
               AS previous
    FROM attempts a
    JOIN jobs j ON j.id = a.job_id
    LEFT JOIN reporting.test_run_tails t
           ON t.org_id = j.org_id AND t.test_path = j.test_path AND t.app_version_id = j.app_version_id
          AND t.target = j.target
    WHERE a.job_id = ANY(CAST(:job_ids AS uuid[])) AND a.outcome IN ('passed', 'test_failed')
), run_totals AS (
    SELECT org_id, app_version_id, test_path, target, day, count(*) AS runs,
           count(*) FILTER (WHERE outcome = 'test_failed') AS failures,
           count(*) FILTER (WHERE outcome = 'passed' AND previous = 'test_failed') AS passes_after_failure,
           max(finished_at) FILTER (WHERE outcome = 'test_failed') AS last_failure_at
    FROM runs
    GROUP BY org_id, app_version_id, test_path, target, day
), job_totals AS (
    SELECT f.org_id, f.app_version_id, f.test_path, f.target, CAST(f.finished_at AT TIME ZONE 'UTC' AS date) AS day,
           count(*) AS finished, count(*) FILTER (WHERE f.status = 'completed') AS completed,
           count(*) FILTER (WHERE f.status = 'failed') AS failed,
           count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled, count(*) FILTER (WHERE j.flaky) AS flaky,
           sum(f.attempts) AS attempts, count(f.duration_seconds) AS durations,
           COALESCE(sum(f.duration_seconds), 0) AS duration_seconds, count(f.queue_wait_seconds) AS queue_waits,
           COALESCE(sum(f.queue_wait_seconds), 0) AS queue_wait_seconds,
           min(f.created_at) AS first_submitted_at, max(f.finished_at) AS last_finished_at
    FROM reporting.finished_jobs f
    JOIN jobs j ON j.id = f.job_id
    WHERE f.job_id = ANY(CAST(:job_ids AS uuid[]))
    GROUP BY 1, 2, 3, 4, 5
), last_runs AS (
    SELECT DISTINCT ON (r.org_id, r.test_path, r.app_version_id, r.target)
           r.org_id, r.test_path, r.app_version_id, r.target, r.outcome, r.finished_at
    FROM runs r
    ORDER BY r.org_id, r.test_path, r.app_version_id, r.target, r.finished_at DESC, r.started_at DESC,
             r.number DESC, r.job_id DESC
), tails AS (
    -- Only a failure can make the next run a "pass after a failure": a test whose last pruned run passed
    -- needs no tail.
    INSERT INTO reporting.test_run_tails AS t (org_id, test_path, app_version_id, target, last_outcome,
                                               last_finished_at)
    SELECT l.org_id, l.test_path, l.app_version_id, l.target, l.outcome, l.finished_at
    FROM last_runs l
    WHERE l.outcome = 'test_failed'
    ON CONFLICT (org_id, test_path, app_version_id, target) DO UPDATE SET
        last_outcome = EXCLUDED.last_outcome, last_finished_at = EXCLUDED.last_finished_at
    WHERE EXCLUDED.last_finished_at >= t.last_finished_at
), passed_tails AS (
    DELETE FROM reporting.test_run_tails t
    USING last_runs l
    WHERE l.outcome = 'passed' AND t.org_id = l.org_id AND t.test_path = l.test_path
      AND t.app_version_id = l.app_version_id AND t.target = l.target AND t.last_finished_at <= l.finished_at
)
INSERT INTO reporting.daily_job_stats AS d (
    org_id, app_version_id, test_path, target, day, finished, completed, failed, cancelled, flaky, attempts,
    durations, duration_seconds, queue_waits, queue_wait_seconds, first_submitted_at, last_finished_at,
    test_runs, test_failures, passes_after_failure, last_failure_at)
SELECT j.org_id, j.app_version_id, j.test_path, j.target, j.day, j.finished, j.completed, j.failed, j.cancelled,
       j.flaky, j.attempts, j.durations, j.duration_seconds, j.queue_waits, j.queue_wait_seconds,
       j.first_submitted_at, j.last_finished_at, COALESCE(r.runs, 0), COALESCE(r.failures, 0),
       COALESCE(r.passes_after_failure, 0), r.last_failure_at
FROM job_totals j
LEFT JOIN run_totals r USING (org_id, app_version_id, test_path, target, day)
ON CONFLICT (org_id, app_version_id, test_path, target, day) DO UPDATE SET
    finished = d.finished + EXCLUDED.finished,
    completed = d.completed + EXCLUDED.completed,
    failed = d.failed + EXCLUDED.failed,
    cancelled = d.cancelled + EXCLUDED.cancelled,
    flaky = d.flaky + EXCLUDED.flaky,
    attempts = d.attempts + EXCLUDED.attempts,
    durations = d.durations + EXCLUDED.durations,
    duration_seconds = d.duration_seconds + EXCLUDED.duration_seconds,
    queue_waits = d.queue_waits + EXCLUDED.queue_waits,
    queue_wait_seconds = d.queue_wait_seconds + EXCLUDED.queue_wait_seconds,
    first_submitted_at = LEAST(d.first_submitted_at, EXCLUDED.first_submitted_at),
    last_finished_at = GREATEST(d.last_finished_at, EXCLUDED.last_finished_at),
    test_runs = d.test_runs + EXCLUDED.test_runs,
    test_failures = d.test_failures + EXCLUDED.test_failures,
    passes_after_failure = d.passes_after_failure + EXCLUDED.passes_after_failure,
    last_failure_at = GREATEST(d.last_failure_at, EXCLUDED.last_failure_at);

-- name: fold_latency
-- The medians' raw material: how many durations and queue waits fell in each log bucket.
INSERT INTO reporting.daily_latency AS d (org_id, metric, day, bucket, jobs)
SELECT f.org_id, m.metric, CAST(f.finished_at AT TIME ZONE 'UTC' AS date), reporting.latency_bucket(m.seconds),
       count(*)
FROM reporting.finished_jobs f
CROSS JOIN LATERAL (VALUES ('duration', f.duration_seconds), ('queue_wait', f.queue_wait_seconds))
    AS m (metric, seconds)
WHERE f.job_id = ANY(CAST(:job_ids AS uuid[])) AND m.seconds IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (org_id, metric, day, bucket) DO UPDATE SET jobs = d.jobs + EXCLUDED.jobs;

-- name: carry_group_attempts
-- Attempts about to go whose group stays (it has live jobs, or is pruned by a later batch): the group's
-- install time and test time must still count them.
INSERT INTO reporting.group_attempts_pruned AS p (group_id, first_started_at, test_ms)
SELECT a.group_id, min(a.started_at), sum(a.duration_ms)
FROM attempts a
JOIN job_groups g ON g.id = a.group_id
WHERE a.job_id = ANY(CAST(:job_ids AS uuid[]))
GROUP BY a.group_id
ON CONFLICT (group_id) DO UPDATE SET
    first_started_at = LEAST(p.first_started_at, EXCLUDED.first_started_at),
    test_ms = COALESCE(p.test_ms + EXCLUDED.test_ms, p.test_ms, EXCLUDED.test_ms);

-- name: delete_attempts
DELETE FROM attempts WHERE job_id = ANY(CAST(:job_ids AS uuid[]));

-- name: delete_jobs
DELETE FROM jobs WHERE id = ANY(CAST(:job_ids AS uuid[]));

-- name: prunable_groups
-- Done groups no job points at any more (ix_job_groups_finished_at, then ix_jobs_group_id).
SELECT g.id
FROM job_groups g
WHERE g.status = 'done' AND g.finished_at < :cutoff
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.group_id = g.id)
ORDER BY g.finished_at
LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: fold_groups
-- The installs of groups about to be deleted, by the day of their claim (reporting.group_installs).
INSERT INTO reporting.daily_installs AS d (org_id, app_version_id, day, installs, install_seconds, test_seconds)
SELECT r.org_id, r.app_version_id, CAST(r.claimed_at AT TIME ZONE 'UTC' AS date), count(*),
       COALESCE(sum(r.install_seconds), 0), COALESCE(sum(r.test_ms) / 1000.0, 0)
FROM reporting.group_installs r
WHERE r.group_id = ANY(CAST(:group_ids AS uuid[]))
GROUP BY 1, 2, 3
ON CONFLICT (org_id, app_version_id, day) DO UPDATE SET
    installs = d.installs + EXCLUDED.installs,
    install_seconds = d.install_seconds + EXCLUDED.install_seconds,
    test_seconds = d.test_seconds + EXCLUDED.test_seconds;

-- name: forget_carried_attempts
DELETE FROM reporting.group_attempts_pruned WHERE group_id = ANY(CAST(:group_ids AS uuid[]));

-- name: delete_groups
DELETE FROM job_groups WHERE id = ANY(CAST(:group_ids AS uuid[]));

-- name: delete_submissions
-- Idempotency keys: a CI step retried after the retention period starts afresh.
DELETE FROM submissions
WHERE idempotency_key IN (
    SELECT idempotency_key FROM submissions
    WHERE created_at < :cutoff
    ORDER BY created_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
);

-- name: prunable_counts
-- What a prune at :cutoff would delete (the dry run). A group counts when every job in it would go.
SELECT
    (SELECT count(*) FROM jobs
     WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < :cutoff) AS jobs,
    (SELECT count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id
     WHERE j.status IN ('completed', 'failed', 'cancelled') AND j.finished_at < :cutoff) AS attempts,
    (SELECT count(*) FROM job_groups g
     WHERE g.status = 'done' AND g.finished_at < :cutoff
       AND NOT EXISTS (SELECT 1 FROM jobs j
                       WHERE j.group_id = g.id
                         AND NOT (j.status IN ('completed', 'failed', 'cancelled') AND j.finished_at < :cutoff))
    ) AS groups,
    (SELECT count(*) FROM submissions WHERE created_at < :cutoff) AS submissions,
    (SELECT min(finished_at) FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')) AS oldest_finished_at;

-- name: cutoff
-- What finished before this (the database's clock) is pruned.
SELECT now() - CAST(:age AS interval);
