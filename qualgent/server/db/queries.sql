-- The hot-path SQL of qualgent, one named statement per block, parsed once by qualgent/server/db/sql.py.
-- Bind parameters are :name; casts are written CAST(... AS ...) so they never collide with them.

-- name: upsert_orgs
-- An unknown org is created as standard on first submit; the ids returned are those created now.
INSERT INTO orgs (id)
SELECT DISTINCT unnest(CAST(:org_ids AS text[]))
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: orgs_like
-- Orgs whose id equals one of these but for case and surrounding whitespace (a typo's likely intent).
SELECT id, lower(btrim(id)) AS normalized FROM orgs
WHERE lower(btrim(id)) = ANY(CAST(:normalized AS text[])) AND id <> ALL(CAST(:org_ids AS text[]))
ORDER BY id;

-- name: upsert_pending_groups
-- One row per (org, app version, target) key, in a fixed order so concurrent submits cannot deadlock.
-- The key's pending group absorbs the new jobs' scheduling keys; a key with no pending group gets one.
INSERT INTO job_groups (org_id, app_version_id, target, tier, best_priority, oldest_job_at, available_at, job_count)
SELECT k.org_id, k.app_version_id, k.target, o.tier, k.best_priority, k.oldest_job_at, k.available_at, k.job_count
FROM unnest(
    CAST(:org_ids AS text[]), CAST(:app_version_ids AS text[]), CAST(:targets AS text[]),
    CAST(:best_priorities AS job_priority[]), CAST(:oldest_job_ats AS timestamptz[]),
    CAST(:available_ats AS timestamptz[]), CAST(:job_counts AS integer[])
) AS k (org_id, app_version_id, target, best_priority, oldest_job_at, available_at, job_count)
JOIN orgs o ON o.id = k.org_id
ORDER BY k.org_id, k.app_version_id, k.target
ON CONFLICT (org_id, app_version_id, target) WHERE status = 'pending' DO UPDATE SET
    best_priority = LEAST(job_groups.best_priority, EXCLUDED.best_priority),
    oldest_job_at = LEAST(job_groups.oldest_job_at, EXCLUDED.oldest_job_at),
    available_at = LEAST(job_groups.available_at, EXCLUDED.available_at),
    job_count = job_groups.job_count + EXCLUDED.job_count
RETURNING id, org_id, app_version_id, target;

-- name: group_jobs_to_run
-- `runnable` by the database's clock, the same clock the claim chose the group by.
SELECT id, org_id, app_version_id, target, test_path, priority, attempts, max_attempts, timeout_seconds,
       run_after, created_at, run_after <= now() AS runnable
FROM jobs
WHERE group_id = :group_id AND status = 'pending'
ORDER BY priority, created_at, id;

-- name: job_keys_of
-- Scheduling keys of jobs that go back to the queue, aggregated per (org, app version, target).
SELECT org_id, app_version_id, target,
       min(priority) AS best_priority, min(created_at) AS oldest_job_at,
       min(run_after) AS available_at, count(*)::int AS job_count
FROM jobs
WHERE id = ANY(CAST(:job_ids AS uuid[]))
GROUP BY org_id, app_version_id, target;

-- name: move_jobs_to_groups
-- Pending jobs (in backoff at a claim, not started in a handed-back group, retried, re-run) join their key's pending
-- group; their status is not this statement's to change: a job in any other state stays where it is.
UPDATE jobs j
SET group_id = g.id, agent_id = NULL, updated_at = now()
FROM unnest(
    CAST(:group_ids AS uuid[]), CAST(:org_ids AS text[]), CAST(:app_version_ids AS text[]),
    CAST(:targets AS text[])
) AS g (id, org_id, app_version_id, target)
WHERE j.id = ANY(CAST(:job_ids AS uuid[])) AND j.status = 'pending'
  AND j.org_id = g.org_id AND j.app_version_id = g.app_version_id AND j.target = g.target;

-- name: lock_claim
-- Every agent write starts here: the claim must still be this agent's, under this token.
SELECT id, status, agent_id, lease_token
FROM job_groups
WHERE id = :group_id
FOR NO KEY UPDATE;

-- name: mark_group_done
-- A claimed group handed back (release, lapsed lease) or left with nothing runnable at its claim: done. Only a
-- running group: a group is never reopened, nor closed twice.
UPDATE job_groups
SET status = 'done', finished_at = now(), lease_expires_at = NULL
WHERE id = :group_id AND status = 'running'
RETURNING agent_id;

-- name: refresh_pending_group
-- After a cancel: recompute a pending group's keys, or retire it when nothing is left in it.
UPDATE job_groups g
SET best_priority = COALESCE(s.best_priority, g.best_priority),
    oldest_job_at = COALESCE(s.oldest_job_at, g.oldest_job_at),
    available_at = COALESCE(s.available_at, g.available_at),
    status = CASE WHEN s.n = 0 THEN 'done' ELSE g.status END,
    finished_at = CASE WHEN s.n = 0 THEN now() ELSE g.finished_at END
FROM (
    SELECT min(priority) AS best_priority, min(created_at) AS oldest_job_at,
           min(run_after) AS available_at, count(*) AS n
    FROM jobs WHERE group_id = :group_id AND status = 'pending'
) s
WHERE g.id = :group_id AND g.status = 'pending';

-- name: running_attempt_of_group
-- Attempts of this group still open: the job running when its agent vanished, and one cancelled
-- mid-run whose agent never reported back.
SELECT a.job_id, a.number, j.status
FROM attempts a
JOIN jobs j ON j.id = a.job_id
WHERE a.group_id = :group_id AND a.finished_at IS NULL;

-- name: lapsed_claims
-- Rescue: running groups whose lease lapsed. SKIP LOCKED: any number of servers may rescue at once.
SELECT id, agent_id
FROM job_groups
WHERE status = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT :limit
FOR NO KEY UPDATE SKIP LOCKED;

-- name: agent_idle_if_free
UPDATE agents a SET status = 'idle'
WHERE a.id = :agent_id AND a.status = 'busy'
  AND NOT EXISTS (SELECT 1 FROM job_groups g WHERE g.agent_id = a.id AND g.status = 'running');

-- name: heartbeat
-- An agent's sign of life, one statement in autocommit (qualgent.server.db.database.Database.tuple_row): its row's
-- last_heartbeat_at; the leases of the claims it still holds under the tokens it presents, extended (both HOT
-- updates: neither column is indexed); and its running jobs that someone cancelled, which it must kill (through
-- its running groups). `known` is false for no such agent. One round trip where a transaction of three statements
-- took five (docs/performance.md, heartbeats).
WITH agent AS (
    UPDATE agents SET last_heartbeat_at = now() WHERE id = :agent_id
    RETURNING id
), extended AS (
    UPDATE job_groups g
    SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
    FROM unnest(CAST(:group_ids AS uuid[]), CAST(:tokens AS uuid[])) AS c (group_id, token)
    WHERE g.id = c.group_id AND g.lease_token = c.token AND g.agent_id = :agent_id AND g.status = 'running'
    RETURNING g.id
)
SELECT EXISTS (SELECT FROM agent) AS known,
       ARRAY(SELECT id FROM extended) AS held,
       ARRAY(
           SELECT j.id
           FROM jobs j
           JOIN job_groups g ON g.id = j.group_id
           WHERE g.agent_id = :agent_id AND g.status = 'running' AND j.status = 'cancelled'
             AND EXISTS (
                 SELECT 1 FROM attempts a
                 WHERE a.job_id = j.id AND a.number = j.attempts AND a.finished_at IS NULL
             )
       ) AS cancelled;

-- name: cancel_jobs
-- One job's cancel and a selection's alike (qualgent.server.queue.jobs, selection): only a pending or running job.
UPDATE jobs
SET status = 'cancelled', finished_at = now(), updated_at = now()
WHERE id = ANY(CAST(:job_ids AS uuid[])) AND status IN ('pending', 'running')
RETURNING *;

-- name: group_status
SELECT status FROM job_groups WHERE id = :group_id;

-- name: get_job
SELECT * FROM jobs WHERE id = :job_id;

-- name: job_attempts
SELECT number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms, error, error_location
FROM attempts WHERE job_id = :job_id ORDER BY number;

-- name: notify
-- Any notification (work available); job changes go through notify_jobs.
SELECT pg_notify('qualgent', p) FROM unnest(CAST(:payloads AS text[])) AS p;

-- name: notify_jobs
SELECT qualgent_notify_jobs(:status, CAST(:job_ids AS uuid[]));

-- name: rerun_jobs
-- A re-run (one job's, or a selection's): only a job in a final state goes back to pending, keeping its attempt
-- history and numbering, with its usual budget of attempts anew; requeue then moves it to its key's pending group.
UPDATE jobs
SET status = 'pending', max_attempts = attempts + attempt_budget, run_after = now(), exit_code = NULL,
    duration_ms = NULL, output_tail = NULL, error = NULL, error_location = NULL, started_at = NULL,
    finished_at = NULL, updated_at = now()
WHERE id = ANY(CAST(:job_ids AS uuid[])) AND status IN ('completed', 'failed', 'cancelled')
RETURNING id;

-- name: get_jobs
SELECT * FROM jobs WHERE id = ANY(CAST(:job_ids AS uuid[]));

-- name: claim_idempotency_key
-- The first submission with a key inserts it; a concurrent second one waits here for the first to
-- commit, then finds it taken.
INSERT INTO submissions (idempotency_key, request_hash, job_ids)
VALUES (:key, :request_hash, CAST(:job_ids AS uuid[]))
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key;

-- name: submission_of_key
SELECT request_hash, job_ids FROM submissions WHERE idempotency_key = :key;

-- name: start_jobs
-- Batched start: this group's pending jobs among :job_ids become running, each opens its attempt and the
-- change is announced (ids and their org, 150 per notification, under PostgreSQL's payload limit; migration 0013),
-- in one statement.
-- elapsed_ms says how long ago the agent started each (it may report a start together with its result).
WITH s AS (
    SELECT * FROM unnest(CAST(:job_ids AS uuid[]), CAST(:elapsed_ms AS bigint[])) AS s (id, elapsed_ms)
), started AS (
    UPDATE jobs j
    SET status = 'running', attempts = j.attempts + 1, agent_id = :agent_id,
        started_at = now() - make_interval(secs => CAST(s.elapsed_ms AS double precision) / 1000),
        finished_at = NULL, updated_at = now()
    FROM s
    WHERE j.id = s.id AND j.group_id = :group_id AND j.status = 'pending'
    RETURNING j.*
), opened AS (
    INSERT INTO attempts (job_id, number, agent_id, group_id, started_at)
    SELECT id, attempts, :agent_id, :group_id, started_at FROM started
), notified AS (
    SELECT qualgent_notify_org_jobs('running', org_id, array_agg(id)) FROM started GROUP BY org_id
)
SELECT started.*, (SELECT count(*) FROM notified) AS notifications FROM started;

-- name: lock_jobs
-- The jobs a batch of results is about, locked against a concurrent cancel.
SELECT * FROM jobs WHERE id = ANY(CAST(:job_ids AS uuid[])) ORDER BY id FOR NO KEY UPDATE;

-- name: finish_runs
-- Batched results, in one statement: every run's attempt is closed; each running job is moved on as
-- qualgent_settle says (completed, failed, or pending again after a backoff: the caller then requeues it) and
-- announced. A job no longer running (cancelled meanwhile) is left as it is: only its run's attempt is closed.
WITH r AS (
    SELECT * FROM unnest(
        CAST(:job_ids AS uuid[]), CAST(:numbers AS integer[]), CAST(:outcomes AS text[]),
        CAST(:finals AS boolean[]), CAST(:exit_codes AS integer[]), CAST(:durations AS bigint[]),
        CAST(:output_tails AS text[]), CAST(:errors AS text[]), CAST(:error_locations AS text[])
    ) AS r (id, number, outcome, final, exit_code, duration_ms, output_tail, error, error_location)
), settled AS (
    SELECT r.*, qualgent_settle(j.id, r.outcome, r.final, j.attempts, j.max_attempts, j.test_retries) AS status
    FROM r JOIN jobs j ON j.id = r.id
    WHERE j.status = 'running'
), closed AS (
    UPDATE attempts a
    SET finished_at = now(), outcome = r.outcome, exit_code = r.exit_code, duration_ms = r.duration_ms,
        error = r.error, error_location = r.error_location
    FROM r
    WHERE a.job_id = r.id AND a.number = r.number AND a.finished_at IS NULL
    RETURNING a.job_id
), finished AS (
    UPDATE jobs j
    SET status = s.status, exit_code = s.exit_code, duration_ms = s.duration_ms, output_tail = s.output_tail,
        error = CASE WHEN s.status = 'pending' THEN s.error ELSE qualgent_job_error(s.outcome, s.error, j.attempts) END,
        error_location = s.error_location,
        run_after = CASE WHEN s.status = 'pending'
                         THEN now() + make_interval(secs => qualgent_retry_delay(j.attempts)) ELSE j.run_after END,
        finished_at = CASE WHEN s.status = 'pending' THEN NULL ELSE now() END, updated_at = now(),
        flaky = qualgent_flaky(j.id, s.outcome, j.attempts)
    FROM settled s
    WHERE j.id = s.id AND j.status = 'running'
    RETURNING j.*
), notified AS (
    SELECT qualgent_notify_org_jobs(status, org_id, array_agg(id)) FROM finished GROUP BY status, org_id
)
SELECT finished.*, (SELECT count(*) FROM notified) AS notifications, (SELECT count(*) FROM closed) AS closed
FROM finished;

-- name: claim
-- The agent's claim, whole (qualgent_claim, schema.sql): its sign of life, the best pending group it can run (aged
-- first; caps; the builds it holds; fair share), the group's jobs. :held is a JSON array of the builds it holds.
SELECT qualgent_claim(:agent_id, CAST(:targets AS text[]), :lease_seconds, :aging_seconds, CAST(:held AS jsonb),
                      :min_chunk_seconds);

-- name: report_runs
-- A report made only of runs that ended their jobs, all or nothing (qualgent_report_runs, schema.sql; SQLSTATE
-- QGRUN otherwise).
SELECT qualgent_report_runs(:agent_id, :group_id, :token, :lease_seconds, CAST(:runs AS jsonb)), NULL;

-- name: report_runs_then_claim
-- The same, and when it closed the group, the agent's next claim: one statement, one commit.
SELECT report,
       CASE WHEN (report ->> 'group_done')::boolean
            THEN qualgent_claim(:agent_id, CAST(:targets AS text[]), :lease_seconds, :aging_seconds,
                                CAST(:held AS jsonb), :min_chunk_seconds) END
FROM qualgent_report_runs(:agent_id, :group_id, :token, :lease_seconds, CAST(:runs AS jsonb)) AS report;

-- name: hold_claim
-- Every batched agent write starts here: the claim must still be this agent's, under this token (the row locked, not
-- written: close_group_and_free_agent writes it once). False: qualgent.server.queue.claims says why (no group, or stale).
SELECT qualgent_hold_claim(:agent_id, :group_id, :token) AS held;

-- name: run_jobs
-- Runs started and finished within one report that end their jobs, one write each (qualgent_run_jobs, schema.sql).
SELECT * FROM qualgent_run_jobs(:agent_id, :group_id, CAST(:runs AS jsonb));

-- name: close_group_and_free_agent
-- Every batched agent write ends here: the group is done once none of its jobs is left (its agent idle unless it
-- holds another), else its lease is extended (qualgent_close_group, schema.sql).
SELECT qualgent_close_group(:group_id, :lease_seconds) AS closed;

-- name: retry_in_place
-- A failed try that the agent's runner retries itself (Playwright's --retries in an AppWright run): the try's
-- attempt is closed and the next one opened at once; the job stays running in its group, on its agent.
WITH r AS (
    SELECT * FROM unnest(
        CAST(:job_ids AS uuid[]), CAST(:numbers AS integer[]), CAST(:outcomes AS text[]),
        CAST(:exit_codes AS integer[]), CAST(:durations AS bigint[]), CAST(:errors AS text[]),
        CAST(:error_locations AS text[])
    ) AS r (id, number, outcome, exit_code, duration_ms, error, error_location)
), closed AS (
    UPDATE attempts a
    SET finished_at = now(), outcome = r.outcome, exit_code = r.exit_code, duration_ms = r.duration_ms,
        error = r.error, error_location = r.error_location
    FROM r
    WHERE a.job_id = r.id AND a.number = r.number AND a.finished_at IS NULL
    RETURNING a.job_id, a.agent_id, a.group_id
), again AS (
    UPDATE jobs j
    SET attempts = j.attempts + 1, exit_code = r.exit_code, duration_ms = r.duration_ms, error = r.error,
        error_location = r.error_location, updated_at = now()
    FROM r, closed
    WHERE j.id = r.id AND closed.job_id = r.id AND j.status = 'running'
    RETURNING j.*, closed.agent_id AS try_agent_id, closed.group_id AS try_group_id
), opened AS (
    INSERT INTO attempts (job_id, number, agent_id, group_id, started_at)
    SELECT id, attempts, try_agent_id, try_group_id, now() FROM again
)
SELECT * FROM again;

-- name: record_group_history
-- Once per finished group (qualgent.server.queue.history), not per job: each test's moving mean duration (the last ~10
-- samples weigh most) and when it last failed; the build's install time the first time it is seen (claim to first
-- start). The agents of one org report the same tests over and over: a row another report is writing (locked), or
-- one written in the last second without a new failure, is left as it is rather than waited for or rewritten, so
-- a quick suite's reports never queue on its rows and write them about once a second.
WITH finished AS (
    SELECT org_id, target, test_path, avg(duration_ms)::float8 AS ms, count(*)::int AS n,
           max(finished_at) FILTER (WHERE status = 'failed') AS failed_at
    FROM jobs
    WHERE group_id = :group_id AND status IN ('completed', 'failed') AND duration_ms IS NOT NULL
    GROUP BY org_id, target, test_path
), free AS (
    SELECT d.org_id, d.target, d.test_path
    FROM test_durations d
    JOIN finished f ON f.org_id = d.org_id AND f.target = d.target AND f.test_path = d.test_path
    WHERE d.updated_at < now() - interval '1 second' OR f.failed_at IS NOT NULL
    ORDER BY d.org_id, d.target, d.test_path
    FOR NO KEY UPDATE OF d SKIP LOCKED
), updated AS (
    UPDATE test_durations d
    SET runs = d.runs + f.n,
        mean_ms = d.mean_ms + (f.ms - d.mean_ms) / LEAST(d.runs + 1, 10),
        last_failed_at = COALESCE(f.failed_at, d.last_failed_at),
        updated_at = now()
    FROM finished f, free
    WHERE free.org_id = d.org_id AND free.target = d.target AND free.test_path = d.test_path
      AND f.org_id = d.org_id AND f.target = d.target AND f.test_path = d.test_path
    RETURNING 1
), inserted AS (
    INSERT INTO test_durations (org_id, target, test_path, runs, mean_ms, last_failed_at)
    SELECT f.org_id, f.target, f.test_path, f.n, f.ms, f.failed_at
    FROM finished f
    WHERE NOT EXISTS (SELECT 1 FROM test_durations d
                      WHERE d.org_id = f.org_id AND d.target = f.target AND d.test_path = f.test_path)
    ORDER BY f.org_id, f.target, f.test_path
    ON CONFLICT DO NOTHING
    RETURNING 1
), install AS (
    INSERT INTO build_installs (org_id, app_version_id, target, install_ms)
    SELECT g.org_id, g.app_version_id, g.target, 1000 * extract(epoch FROM min(j.started_at) - g.claimed_at)
    FROM job_groups g
    JOIN jobs j ON j.group_id = g.id
    WHERE g.id = :group_id AND j.started_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM build_installs b
                      WHERE b.org_id = g.org_id AND b.app_version_id = g.app_version_id AND b.target = g.target)
    GROUP BY g.org_id, g.app_version_id, g.target, g.claimed_at
    HAVING min(j.started_at) >= g.claimed_at
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM updated)::int + (SELECT count(*) FROM inserted)::int AS tests,
       (SELECT count(*) FROM install)::int AS installs;

-- name: queue_estimates
-- For pending groups: the groups of their target ahead of them (in tier, priority, age order), the expected work
-- of those and of what runs on the target now (jobs x the org's median test duration on the target, 30 s when it
-- has none, plus each build's install time when known), the agents online for the target and its cap.
WITH g AS (
    SELECT id, target, tier, best_priority, oldest_job_at
    FROM job_groups
    WHERE id = ANY(CAST(:group_ids AS uuid[])) AND status = 'pending'
), per_org AS (
    SELECT org_id, target, percentile_cont(0.5) WITHIN GROUP (ORDER BY mean_ms) AS ms
    FROM test_durations
    WHERE target IN (SELECT target FROM g)
    GROUP BY org_id, target
)
SELECT g.id, g.target, a.ahead, a.work_ms,
       (SELECT COALESCE(sum(
            (SELECT count(*) FROM jobs j WHERE j.group_id = r.id AND j.status IN ('pending', 'running'))
            * COALESCE((SELECT ms FROM per_org p WHERE p.org_id = r.org_id AND p.target = r.target), 30000)), 0)
        FROM job_groups r WHERE r.status = 'running' AND r.target = g.target)::float8 AS running_ms,
       (SELECT count(*) FROM qualgent_agents(:offline_after) ag
        WHERE g.target = ANY(ag.targets) AND ag.status <> 'offline')::int AS agents_online,
       (SELECT max_running FROM targets t WHERE t.target = g.target) AS max_running
FROM g
CROSS JOIN LATERAL (
    SELECT count(*)::int AS ahead,
           COALESCE(sum(o.job_count * COALESCE(p.ms, 30000) + COALESCE(b.install_ms, 0)), 0)::float8 AS work_ms
    FROM job_groups o
    LEFT JOIN per_org p ON p.org_id = o.org_id AND p.target = o.target
    LEFT JOIN build_installs b
      ON b.org_id = o.org_id AND b.app_version_id = o.app_version_id AND b.target = o.target
    WHERE o.status = 'pending' AND o.target = g.target
      AND (o.tier, o.best_priority, o.oldest_job_at, o.id) < (g.tier, g.best_priority, g.oldest_job_at, g.id)
) a;

-- name: claim_once_held
-- A refused report's claim: was it ever this agent's, under this token (qualgent.server.queue.orphans)?
SELECT org_id, app_version_id, target
FROM job_groups
WHERE id = :group_id AND agent_id = :agent_id AND lease_token = :token;

-- name: lock_job_for_orphan
-- The job a run reported after its claim was lost is about, locked against its other writers; `on_record`: this
-- agent's run of it in this group has an attempt already; `open_attempt`: another run of it is going on.
SELECT j.id, j.org_id, j.app_version_id, j.target, j.attempts,
       EXISTS (SELECT 1 FROM attempts a
               WHERE a.job_id = j.id AND a.group_id = :group_id AND a.agent_id = :agent_id) AS on_record,
       EXISTS (SELECT 1 FROM attempts a
               WHERE a.job_id = j.id AND a.number = j.attempts AND a.finished_at IS NULL) AS open_attempt
FROM jobs j
WHERE j.id = :job_id
FOR NO KEY UPDATE OF j;

-- name: renumber_open_attempt
-- The run going on keeps the job's latest attempt number: it moves up one to make room for a run before it.
UPDATE attempts SET number = number + 1 WHERE job_id = :job_id AND number = :number AND finished_at IS NULL;

-- name: record_orphan_run
-- A run that started without the server knowing, recorded in the job's history; the job's state is left as it
-- is but its attempt count, which the run spent.
WITH counted AS (
    UPDATE jobs SET attempts = attempts + 1 WHERE id = :job_id
    RETURNING id
)
INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code, duration_ms,
                      error)
SELECT id, :number, :agent_id, :group_id, now() - make_interval(secs => CAST(:started_ms_ago AS double precision) / 1000),
       now(), :outcome, :exit_code, :duration_ms, :error
FROM counted;

-- name: transaction_time
-- now() of the submitting transaction: every job and group it makes shares it.
SELECT now();

-- name: copy_jobs
-- A submission's jobs, as blocks of COPY text (qualgent.server.queue.jobs.submit_in): status defaults to pending.
COPY jobs (id, org_id, app_version_id, target, test_path, priority, max_attempts, attempt_budget, test_retries,
           timeout_seconds, group_id) FROM STDIN;
