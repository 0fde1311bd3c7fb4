-- qualgent's functions, triggers and views: the current definition of each, the only one.
--
-- Applied by the schema upgrade that reaches head (qualgent.server.db.migrate), in the upgrade's transaction, whenever
-- this text differs from the one the database last got: every function, trigger and view of ours is dropped and
-- this file runs top to bottom on the tables the migrations made. To change one of them, edit it here: no
-- migration. To change a table, write a migration (docs/design.md, "Schema and migrations").
--
-- Order: what a SQL-language function or a view reads must come before it (PostgreSQL checks their bodies when
-- they are created); PL/pgSQL bodies are resolved when they run.


-- ============================================================================================================
-- Job-change notifications
-- ============================================================================================================

-- Every job state change announces itself on the `qualgent` channel: {"kind": "jobs", "status", "org_id", "ids"},
-- ids only, at most 150 per notification (PostgreSQL's payload limit is 8,000 bytes). The org rides along so a
-- server hands a notification only to the event streams that may see that org (qualgent.server.notify.hub), before any
-- read. The hot path's statements (start_jobs, finish_runs, qualgent_run_jobs) group by org and call this one,
-- reading nothing more; the payload's format lives here only.
CREATE FUNCTION qualgent_notify_org_jobs(status text, org_id text, ids uuid[]) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
SELECT count(*)::integer
FROM (
    SELECT pg_notify('qualgent', json_build_object(
        'kind', 'jobs', 'status', status, 'org_id', org_id, 'ids', json_agg(u.id))::text)
    FROM unnest(ids) WITH ORDINALITY AS u (id, n)
    GROUP BY (u.n - 1) / 150
) AS sent
$$;

-- The same for ids of any orgs: looks their orgs up (submit, cancel, re-run and retry, off the hot path).
-- $1 and $2: in a SQL function a column name wins over a parameter's, and jobs has a `status`.
CREATE FUNCTION qualgent_notify_jobs(status text, ids uuid[]) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
SELECT COALESCE(sum(qualgent_notify_org_jobs($1, o.org_id, o.ids)), 0)::integer
FROM (
    SELECT j.org_id, array_agg(j.id ORDER BY j.id) AS ids
    FROM jobs j
    WHERE j.id = ANY($2)
    GROUP BY j.org_id
) AS o
$$;


-- ============================================================================================================
-- The agents' hot path: a claim, or a report of finished runs, is one statement
-- ============================================================================================================
--
-- Called in autocommit, each function is one round trip and one commit, with its plans cached per connection and
-- a batch passed as one JSON document (procrastinate keeps its fetch and finish in stored functions for the same
-- reasons).

-- Agents as the API, the dashboard and queue estimates see them: one silent for more than p_offline_after seconds
-- (OFFLINE_AFTER_LEASES leases) is offline whatever its row says; group_id is the group it runs now, if any. The
-- one place of that rule. Plain SQL, STABLE: PostgreSQL inlines it, so a caller's WHERE reaches the agents' index.
CREATE FUNCTION qualgent_agents(p_offline_after double precision)
RETURNS TABLE (id uuid, name text, targets text[], registered_at timestamptz, last_heartbeat_at timestamptz,
               deregistered_at timestamptz, status text, group_id uuid)
LANGUAGE sql STABLE
AS $$
SELECT a.id, a.name, a.targets, a.registered_at, a.last_heartbeat_at, a.deregistered_at,
       CASE WHEN a.status <> 'offline' AND a.last_heartbeat_at < now() - make_interval(secs => p_offline_after)
            THEN 'offline' ELSE a.status END,
       (SELECT g.id FROM job_groups g WHERE g.agent_id = a.id AND g.status = 'running'
        ORDER BY g.claimed_at DESC LIMIT 1)
FROM agents a
$$;

-- What a job that ends says went wrong: the agent's words, or for an infrastructure failure it did not explain,
-- how many attempts it took. Used by qualgent_run_jobs and the finish_runs statement alike. Built with || (not
-- format(), which is STABLE) so that PostgreSQL inlines this IMMUTABLE function in the statements that call it.
CREATE FUNCTION qualgent_job_error(p_outcome text, p_error text, p_attempts integer)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
SELECT CASE WHEN p_outcome = 'infra_error' AND COALESCE(p_error, '') = ''
            THEN 'infrastructure error after ' || p_attempts::text || ' attempt(s)'
            ELSE p_error END
$$;

-- The claim: the best pending group the agent can run, and its sign of life, whole, with its jobs in run order.
-- `deferred` lists jobs still in backoff and `split` the jobs left for idle agents of the target: the caller moves
-- both back to the key's pending group. docs/design.md ("3. The claim, line by line") gives the ranking.
--   - bounded starvation: a group pending longer than p_aging_seconds goes first, the oldest first;
--   - else the best (tier, priority) among the first 16 groups in scheduling order (ix_job_groups_claimable), and
--     within it a build the agent holds (p_held: [{target, org_id, app_version_id}]), else the org served least
--     recently (orgs.last_claimed_at: fair share), else the oldest;
--   - caps (targets.max_running, orgs.max_running) are counted under a transaction-level advisory lock per target
--     and per org, class 'qgcp' (0x71676370), taken only when the candidate's key has a cap: two claims of a capped
--     key take turns and the second counts the first one's group. Advisory locks, not the orgs or targets rows, so
--     a cap's lock never meets a foreign-key check, a tier change or a submission;
--   - splitting: with other agents of the target idle and at least two chunks (p_min_chunk_seconds) of expected
--     work (test_durations, else the org's median, else 30 s), the claim keeps a fair share, never less than a
--     chunk;
--   - run order: priority, then tests that failed in the last day, then the longest expected, then age.
--
-- enable_sort = off: every statement walks an index in the order it wants, even on statistics older than a burst
-- of submissions (the planner would otherwise believe few groups are pending and sort them all); the only sort
-- left is the fair-share pick over at most 16 rows. That sort then carries the planner's penalty for a disabled
-- node, far past jit_above_cost: jit = off, or PostgreSQL would compile the statement on every claim. Generic
-- plans, always: the same penalty kept PL/pgSQL from ever preferring its cached generic plans, and the plans do not
-- depend on the arguments (every statement reads its index in order or by key).
CREATE FUNCTION qualgent_claim(p_agent_id uuid, p_targets text[], p_lease_seconds double precision,
                               p_aging_seconds double precision DEFAULT 600, p_held jsonb DEFAULT '[]',
                               p_min_chunk_seconds double precision DEFAULT 120)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    agent_status text;
    chosen uuid;
    chosen_target text;
    chosen_org text;
    claimed record;
    pick uuid;
    cap integer;
    full_targets text[] := '{}';   -- capped and at their cap: skipped for the rest of this claim
    full_orgs text[] := '{}';
    tries integer := 0;
    job_list jsonb;
    deferred jsonb;
    split jsonb;
    unknown bigint;
    median_ms double precision;
    total_ms double precision;
    idle integer := 0;
    share_ms double precision := 'Infinity';
BEGIN
    SELECT status INTO agent_status FROM agents WHERE id = p_agent_id;
    IF agent_status IS NULL THEN
        RETURN jsonb_build_object('agent_status', NULL);  -- unknown
    END IF;
    IF agent_status = 'offline' THEN  -- set offline by an operator, or deregistered: a sign of life, no work
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- Each turn locks one candidate (FOR NO KEY UPDATE SKIP LOCKED: claims run side by side) and keeps it when no
    -- cap stops it; a cap that stops it adds its key to the skipped ones, so the turns are bounded by the caps met.
    LOOP
        tries := tries + 1;
        EXIT WHEN tries > 16;
        chosen := NULL;
        pick := NULL;
        -- 1. Bounded starvation: a group waiting longer than the bound goes first, the oldest first.
        WITH aged AS (
            SELECT id, target, org_id
            FROM job_groups
            WHERE status = 'pending' AND oldest_job_at <= now() - make_interval(secs => p_aging_seconds)
              AND target = ANY(p_targets) AND available_at <= now()
              AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
            ORDER BY oldest_job_at, id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT id, target, org_id INTO chosen, chosen_target, chosen_org FROM aged;
        IF chosen IS NULL THEN
            -- 2. The best (tier, priority) among the first groups in scheduling order; within it a build the agent
            -- holds, else the org served least recently, else the oldest (the index order).
            WITH head AS MATERIALIZED (
                SELECT id, org_id, app_version_id, target, tier, best_priority, oldest_job_at
                FROM job_groups
                WHERE status = 'pending' AND target = ANY(p_targets) AND available_at <= now()
                  AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
                ORDER BY tier, best_priority, oldest_job_at, id
                LIMIT 16
            ), best_tier AS (
                SELECT min(tier) AS tier FROM head
            ), bracket AS (
                SELECT t.tier, min(h.best_priority) AS best_priority
                FROM best_tier t JOIN head h ON h.tier = t.tier
                GROUP BY t.tier
            ), held AS (
                -- Each held build's pending group by its key (at most one: uq_job_groups_pending_key); the
                -- LIMIT keeps the lookup a per-build index probe, whatever the planner thinks of the join.
                SELECT g.id
                FROM jsonb_to_recordset(p_held) AS b (target text, org_id text, app_version_id text)
                CROSS JOIN LATERAL (
                    SELECT p.id, p.tier, p.best_priority, p.target, p.org_id, p.available_at
                    FROM job_groups p
                    WHERE p.org_id = b.org_id AND p.app_version_id = b.app_version_id AND p.target = b.target
                      AND p.status = 'pending'
                    LIMIT 1
                ) g
                JOIN bracket k ON g.tier = k.tier AND g.best_priority = k.best_priority
                WHERE g.target = ANY(p_targets) AND g.available_at <= now()
                  AND g.target <> ALL(full_targets) AND g.org_id <> ALL(full_orgs)
                LIMIT 1
            ), fair AS (
                SELECT h.id
                FROM head h
                JOIN bracket k ON h.tier = k.tier AND h.best_priority = k.best_priority
                -- at most 16 rows: each org's stamp looked up by its key, never a scan of every org
                ORDER BY (SELECT o.last_claimed_at FROM orgs o WHERE o.id = h.org_id) NULLS FIRST, h.oldest_job_at, h.id
                LIMIT 1
            )
            SELECT COALESCE((SELECT id FROM held), (SELECT id FROM fair)) INTO pick;
            IF pick IS NULL THEN
                EXIT;  -- nothing this agent may run
            END IF;
            SELECT id, target, org_id INTO chosen, chosen_target, chosen_org
            FROM job_groups
            WHERE id = pick AND status = 'pending'
            FOR NO KEY UPDATE SKIP LOCKED;
            IF chosen IS NULL THEN
                -- Another claim took the pick first: the next group no one else is taking, in scheduling order.
                -- The CTE is a fence: LIMIT 1 cannot become "every match".
                WITH candidate AS (
                    SELECT id, target, org_id
                    FROM job_groups
                    WHERE status = 'pending' AND target = ANY(p_targets) AND available_at <= now()
                      AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
                    ORDER BY tier, best_priority, oldest_job_at, id
                    LIMIT 1
                    FOR NO KEY UPDATE SKIP LOCKED
                )
                SELECT id, target, org_id INTO chosen, chosen_target, chosen_org FROM candidate;
                EXIT WHEN chosen IS NULL;
            END IF;
        END IF;
        -- 3. Caps, counted under the key's advisory lock (held to the end of this transaction): a claim that waited
        -- for it counts, in its next statement's snapshot, the group the one before it committed.
        SELECT max_running INTO cap FROM targets WHERE target = chosen_target;
        IF cap IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(1902601072, hashtext('target:' || chosen_target));
            IF (SELECT count(*) FROM job_groups WHERE status = 'running' AND target = chosen_target) >= cap THEN
                full_targets := full_targets || chosen_target;
                chosen := NULL;
                CONTINUE;
            END IF;
        END IF;
        SELECT max_running INTO cap FROM orgs WHERE id = chosen_org;
        IF cap IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(1902601072, hashtext('org:' || chosen_org));
            IF (SELECT count(*) FROM job_groups WHERE status = 'running' AND org_id = chosen_org) >= cap THEN
                full_orgs := full_orgs || chosen_org;
                chosen := NULL;
                CONTINUE;
            END IF;
        END IF;
        EXIT;
    END LOOP;
    IF chosen IS NOT NULL THEN
        UPDATE job_groups g
        SET status = 'running', agent_id = p_agent_id, lease_token = gen_random_uuid(),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds), claimed_at = now()
        WHERE g.id = chosen
        RETURNING g.id, g.org_id, g.app_version_id, g.target, g.lease_token, g.lease_expires_at INTO claimed;
    END IF;
    IF chosen IS NULL THEN
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- Fair share's clock. A claim of the same org in flight holds the row and stamps it as well: skip it rather
    -- than wait for its commit (an org's concurrent claims never queue on its row).
    UPDATE orgs SET last_claimed_at = now()
    WHERE id = (SELECT id FROM orgs WHERE id = claimed.org_id FOR NO KEY UPDATE SKIP LOCKED);
    -- Expected work of the runnable jobs (history; a test without any counts the org's median, 30 s without one).
    SELECT count(*) FILTER (WHERE d.test_path IS NULL), sum(d.mean_ms) INTO unknown, total_ms
    FROM jobs j
    LEFT JOIN test_durations d
      ON d.org_id = claimed.org_id AND d.target = claimed.target AND d.test_path = j.test_path
    WHERE j.group_id = claimed.id AND j.status = 'pending' AND j.run_after <= now();
    IF unknown > 0 THEN
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.mean_ms) INTO median_ms
        FROM test_durations d WHERE d.org_id = claimed.org_id AND d.target = claimed.target;
    END IF;
    median_ms := COALESCE(median_ms, 30000);
    total_ms := COALESCE(total_ms, 0) + unknown * median_ms;
    -- Splitting: with other agents of the target idle and at least two chunks of work, keep a fair share (never
    -- less than a chunk); the rest goes back to the key's pending group for them (the caller moves it, as it
    -- moves jobs still in backoff).
    IF total_ms >= 2 * p_min_chunk_seconds * 1000 THEN
        SELECT count(*) INTO idle
        FROM agents a
        WHERE a.status = 'idle' AND a.id <> p_agent_id AND claimed.target = ANY(a.targets)
          AND a.last_heartbeat_at > now() - make_interval(secs => 3 * p_lease_seconds);
        IF idle > 0 THEN
            share_ms := greatest(p_min_chunk_seconds * 1000, total_ms / (idle + 1));
        END IF;
    END IF;
    -- Run order: priority, then tests that failed in the last day, then the longest expected, then age; runnable by
    -- the database's clock, the clock the claim chose the group by. A job is kept while the work before it in
    -- that order is under the share (so the first always is).
    WITH est AS (
        SELECT j.id, j.test_path, j.priority, j.attempts, j.max_attempts, j.timeout_seconds, j.created_at,
               j.run_after <= now() AS runnable, COALESCE(d.mean_ms, median_ms) AS est_ms,
               COALESCE(d.last_failed_at > now() - interval '1 day', false) AS failed_recently
        FROM jobs j
        LEFT JOIN test_durations d
          ON d.org_id = claimed.org_id AND d.target = claimed.target AND d.test_path = j.test_path
        WHERE j.group_id = claimed.id AND j.status = 'pending'
    ), ordered AS (
        SELECT est.*,
               sum(est_ms) OVER (PARTITION BY runnable ORDER BY priority, failed_recently DESC, est_ms DESC,
                                 created_at, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_ms,
               row_number() OVER (PARTITION BY runnable ORDER BY priority, failed_recently DESC, est_ms DESC,
                                  created_at, id) AS n
        FROM est
    )
    SELECT jsonb_agg(jsonb_build_object(
               'id', o.id, 'test_path', o.test_path, 'priority', o.priority, 'attempts', o.attempts,
               'max_attempts', o.max_attempts, 'timeout_seconds', o.timeout_seconds)
               ORDER BY o.n) FILTER (WHERE o.runnable AND COALESCE(o.before_ms, 0) < share_ms),
           jsonb_agg(o.id) FILTER (WHERE o.runnable AND COALESCE(o.before_ms, 0) >= share_ms),
           jsonb_agg(o.id) FILTER (WHERE NOT o.runnable)
    INTO job_list, split, deferred
    FROM ordered o;
    -- The agent's sign of life, and busy when it has jobs to run: one row version per claim.
    UPDATE agents
    SET last_heartbeat_at = now(), status = CASE WHEN job_list IS NULL THEN status ELSE 'busy' END
    WHERE id = p_agent_id;
    RETURN jsonb_build_object(
        'agent_status', agent_status,
        'group', jsonb_build_object(
            'id', claimed.id, 'org_id', claimed.org_id, 'app_version_id', claimed.app_version_id,
            'target', claimed.target, 'token', claimed.lease_token, 'lease_expires_at', claimed.lease_expires_at),
        'jobs', COALESCE(job_list, '[]'::jsonb),
        'deferred', COALESCE(deferred, '[]'::jsonb),
        'split', COALESCE(split, '[]'::jsonb));
END
$$;

-- Fencing: the claim is this agent's, under this token, still running. The row is locked (FOR NO KEY UPDATE) for
-- the rest of the caller's transaction, not written: the report's one write of the group's row is
-- qualgent_close_group's (a row updated twice in the transaction that wrote it makes PostgreSQL check every
-- foreign key of the table, with a row lock on the org that all of an org's agents share).
CREATE FUNCTION qualgent_hold_claim(p_agent_id uuid, p_group_id uuid, p_token uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- Locked until the caller's transaction ends; written once, by qualgent_close_group.
    PERFORM 1 FROM job_groups
    WHERE id = p_group_id AND status = 'running' AND lease_token = p_token AND agent_id = p_agent_id
    FOR NO KEY UPDATE;
    RETURN FOUND;
END
$$;

-- One owner per state change: what a run's end does to its job is decided here, by qualgent_settle, and nowhere
-- else. Every path asks it: the one-statement report (qualgent_run_jobs), the general path and the hand-back of a
-- lapsed or released claim (the finish_runs statement). qualgent/server/queue/transitions.py lists every transition and
-- its owner; tests/integration/test_transitions.py checks the code and docs/design.md's diagrams against it.
--
-- A test failure is retried while the submission's test retries and the job's attempts last; `attempt` is the run's
-- own number, so its failure is the one more than the test failures numbered below it. Plain SQL, so that PostgreSQL
-- inlines these into the statements that call them: the earlier attempts are read (qualgent_test_failures_before)
-- only in the branch that needs them, never for a passed run, the common case.
CREATE FUNCTION qualgent_test_failures_before(p_job_id uuid, p_attempt integer)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
SELECT count(*) FROM attempts a WHERE a.job_id = p_job_id AND a.number < p_attempt AND a.outcome = 'test_failed'
$$;

-- What the run numbered p_attempt leaves its job: 'completed', 'failed', or 'pending' (retried after a backoff).
CREATE FUNCTION qualgent_settle(p_job_id uuid, p_outcome text, p_final boolean, p_attempt integer,
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
$$;

-- Whether that run makes its job flaky: passed after an earlier test failure (a first run reads nothing).
CREATE FUNCTION qualgent_flaky(p_job_id uuid, p_outcome text, p_attempt integer)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
SELECT CASE WHEN p_outcome = 'passed' AND p_attempt > 1
            THEN qualgent_test_failures_before(p_job_id, p_attempt) > 0
            ELSE false END
$$;

-- The backoff before a retried job may run again: 2 s, 4 s, 8 s ... capped at 300 s, +-25% so that jobs failed
-- together by one outage do not come back together.
CREATE FUNCTION qualgent_retry_delay(p_attempt integer)
RETURNS double precision
LANGUAGE sql VOLATILE
AS $$
SELECT least(300.0, 2.0 * power(2.0, greatest(0, p_attempt - 1))) * (0.75 + random() * 0.5)
$$;

-- Runs started and finished within one report that end their job (as qualgent_settle says): pending to final in
-- one row version, the attempt written once. A run that qualgent_settle would retry is left to the general path
-- (finish_runs), which asks the same function.
CREATE FUNCTION qualgent_run_jobs(p_agent_id uuid, p_group_id uuid, p_runs jsonb)
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
$$;

-- The report's one write of the group's row: done once none of its jobs is left to run (and its agent idle unless
-- it holds another), else its lease extended. The NOT EXISTS sees this transaction's own earlier writes (a new
-- statement, a new snapshot in the function).
CREATE FUNCTION qualgent_close_group(p_group_id uuid, p_lease_seconds double precision)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    holder uuid;
BEGIN
    UPDATE job_groups g
    SET status = 'done', finished_at = now(), lease_expires_at = NULL
    WHERE g.id = p_group_id AND g.status = 'running'
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.group_id = g.id AND j.status IN ('pending', 'running'))
    RETURNING g.agent_id INTO holder;
    IF NOT FOUND THEN
        UPDATE job_groups SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
        WHERE id = p_group_id AND status = 'running';
        RETURN false;
    END IF;
    UPDATE agents a SET status = 'idle'
    WHERE a.id = holder AND a.status = 'busy'
      AND NOT EXISTS (SELECT 1 FROM job_groups o WHERE o.agent_id = a.id AND o.status = 'running');
    RETURN true;
END
$$;

-- A progress report whose runs all end their jobs, all or nothing: qualgent_hold_claim, qualgent_run_jobs,
-- qualgent_close_group. SQLSTATE QGRUN when a run does not end its job: the caller takes the general path. For
-- metrics and the agent's answer the caller needs a few fields of each job, not whole rows.
CREATE FUNCTION qualgent_report_runs(p_agent_id uuid, p_group_id uuid, p_token uuid,
                                     p_lease_seconds double precision, p_runs jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ran jsonb;
    ran_count integer;
BEGIN
    IF NOT qualgent_hold_claim(p_agent_id, p_group_id, p_token) THEN
        RETURN NULL;  -- not this agent's claim (any more): the caller says why
    END IF;
    SELECT count(*), jsonb_agg(jsonb_build_object(
               'id', j.id, 'status', j.status, 'attempts', j.attempts, 'target', j.target,
               'priority', j.priority, 'duration_ms', j.duration_ms,
               'queue_wait_seconds', extract(epoch FROM j.started_at - j.created_at)))
    INTO ran_count, ran
    FROM qualgent_run_jobs(p_agent_id, p_group_id, p_runs) AS j;
    IF ran_count < jsonb_array_length(p_runs) THEN
        RAISE EXCEPTION 'a run did not end its job (a retry, or a job no longer pending)' USING ERRCODE = 'QGRUN';
    END IF;
    RETURN jsonb_build_object('ran', COALESCE(ran, '[]'::jsonb),
                              'group_done', qualgent_close_group(p_group_id, p_lease_seconds));
END
$$;


-- ============================================================================================================
-- api_tokens: every change is announced, so servers may keep live tokens in memory
-- ============================================================================================================
--
-- Servers keep the tokens they have seen live (qualgent.server.queue.tokens.TokenCache) and forget them all when this
-- trigger announces {"kind": "tokens"}: after any UPDATE, DELETE or TRUNCATE of api_tokens, whoever made it
-- (`qgjob token revoke`, the API, or SQL by hand). A statement-level trigger, so a statement that revokes a
-- thousand tokens sends one notification, and PostgreSQL delivers it only if the transaction commits.
CREATE FUNCTION qualgent_announce_token_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('qualgent', '{"kind": "tokens"}');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_changed
AFTER UPDATE OR DELETE OR TRUNCATE ON api_tokens
FOR EACH STATEMENT EXECUTE FUNCTION qualgent_announce_token_change();


-- ============================================================================================================
-- reporting: views for analysts (docs/reporting.md)
-- ============================================================================================================
--
-- Each aggregate is a SQL function over a time window, reporting.<name>_between(since, until), and a view of the
-- same name without the suffix over all time. The functions are plain LANGUAGE sql STABLE single SELECTs, so
-- PostgreSQL inlines them: a filter on a view's org_id reaches the jobs index. Retention (`qgjob prune`) folds
-- what it deletes into the rollup tables (reporting.daily_*, test_run_tails, group_attempts_pruned) and the
-- functions add those to what is still in the live tables, so totals and rates over all time count pruned jobs.
-- Medians and percentiles cannot be merged exactly: over a window that includes pruned days they are estimated
-- from log buckets 2^(1/8) wide (within 9%).

-- One row per finished job. The queue wait is from submission to the job's first start: for a job that started
-- once, jobs.started_at is that start (start_job sets it and opens attempt 1 in one transaction, so both read the
-- same now()); only jobs started more than once look up attempt 1.
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
WHERE j.status IN ('completed', 'failed', 'cancelled');

COMMENT ON VIEW reporting.finished_jobs IS 'One row per finished job, with its duration and its queue wait (submission to first start), in seconds.';

-- Where a UTC day starts: the rollups are kept per UTC day, windows are timestamps.
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
        WHERE d.org_id = org AND reporting.day_start(d.day) >= COALESCE(since, '-infinity') AND reporting.day_start(d.day) < COALESCE(until, 'infinity')
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

-- success_rate = completed / (completed + failed): a cancelled job says nothing about the app. Over a window with
-- pruned days, the medians and p95 come from reporting.latency_percentiles.
CREATE FUNCTION reporting.org_success_rates_between(
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
        WHERE reporting.day_start(d.day) >= COALESCE(since, '-infinity') AND reporting.day_start(d.day) < COALESCE(until, 'infinity')
        GROUP BY d.org_id
    ) AS u
    GROUP BY u.org_id
) AS s
JOIN orgs o ON o.id = s.org_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.pruned THEN reporting.latency_percentiles(s.org_id, since, until) END AS p
) AS m
$$;

-- A run is an attempt that reached a test verdict (passed or test_failed; infrastructure errors and cancels are
-- not verdicts). A pass after a failure is a pass whose previous run of the same test, on the same app version and
-- target, failed: same code, different verdict. Tests that never failed are left out. Runs are ordered by finish
-- time, then start time, attempt number and job id, as retention's fold does (qualgent/server/db/retention.sql). The
-- previous run of the first live verdict is the last pruned one when that is inside the window (lag()'s default),
-- so a pass right after a pruned failure still counts.
CREATE FUNCTION reporting.flaky_tests_between(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
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
                                                       ORDER BY a.finished_at, a.started_at, a.number, a.job_id) AS previous
        FROM attempts a
        JOIN jobs j ON j.id = a.job_id
        LEFT JOIN reporting.test_run_tails t
               ON t.org_id = j.org_id AND t.test_path = j.test_path AND t.app_version_id = j.app_version_id
              AND t.target = j.target
              AND t.last_finished_at >= COALESCE(since, '-infinity') AND t.last_finished_at < COALESCE(until, 'infinity')
        WHERE a.outcome IN ('passed', 'test_failed')
          AND a.finished_at >= COALESCE(since, '-infinity') AND a.finished_at < COALESCE(until, 'infinity')
    ) AS q
    GROUP BY q.org_id, q.test_path, q.app_version_id
    UNION ALL
    SELECT d.org_id, d.test_path, d.app_version_id, sum(d.test_runs), sum(d.test_failures),
           sum(d.passes_after_failure), max(d.last_failure_at)
    FROM reporting.daily_job_stats d
    WHERE d.test_runs > 0 AND reporting.day_start(d.day) >= COALESCE(since, '-infinity') AND reporting.day_start(d.day) < COALESCE(until, 'infinity')
    GROUP BY d.org_id, d.test_path, d.app_version_id
) AS r
GROUP BY r.org_id, r.test_path
HAVING sum(r.failures) > 0
$$;

-- One row per group an agent ran: an install. install_seconds is the time from the claim to the group's first test
-- start (the install and the agent's set-up), test_ms the sum of every attempt's run time, retries included; a live
-- group's attempts include those pruned from it already (group_attempts_pruned). reporting.app_versions_between
-- sums these rows, and retention folds them into reporting.daily_installs (fold_groups) before it deletes a group.
CREATE VIEW reporting.group_installs AS
SELECT gr.id AS group_id, gr.org_id, gr.app_version_id, gr.target, gr.claimed_at,
       min(a.started_at) AS first_started_at,
       EXTRACT(EPOCH FROM min(a.started_at) - gr.claimed_at)::float8 AS install_seconds,
       sum(a.duration_ms)::bigint AS test_ms
FROM job_groups gr
JOIN (
    SELECT x.group_id, x.started_at, x.duration_ms FROM attempts x
    UNION ALL
    SELECT p.group_id, p.first_started_at, p.test_ms FROM reporting.group_attempts_pruned p
) AS a ON a.group_id = gr.id
WHERE gr.claimed_at IS NOT NULL
GROUP BY gr.id, gr.org_id, gr.app_version_id, gr.target, gr.claimed_at;

COMMENT ON VIEW reporting.group_installs IS 'One row per group an agent ran (an install): claim time, first test start, install seconds (claim to first start), test milliseconds (every attempt, retries included).';

-- Per app version: its finished jobs, and its installs (reporting.group_installs, and the days pruned).
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
            WHERE f.status IN ('completed', 'failed', 'cancelled')
              AND f.finished_at >= COALESCE(since, '-infinity') AND f.finished_at < COALESCE(until, 'infinity')
            GROUP BY f.org_id, f.app_version_id, f.test_path
            UNION ALL
            SELECT d.org_id, d.app_version_id, d.test_path, sum(d.finished), sum(d.completed), sum(d.failed),
                   sum(d.cancelled), min(d.first_submitted_at), max(d.last_finished_at)
            FROM reporting.daily_job_stats d
            WHERE reporting.day_start(d.day) >= COALESCE(since, '-infinity') AND reporting.day_start(d.day) < COALESCE(until, 'infinity')
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
        SELECT r.org_id, r.app_version_id, count(*) AS installs, sum(r.install_seconds)::float8 AS install_seconds,
               sum(r.test_ms) / 1000.0::float8 AS test_seconds
        FROM reporting.group_installs r
        WHERE r.claimed_at >= COALESCE(since, '-infinity') AND r.claimed_at < COALESCE(until, 'infinity')
        GROUP BY r.org_id, r.app_version_id
        UNION ALL
        SELECT d.org_id, d.app_version_id, sum(d.installs), sum(d.install_seconds), sum(d.test_seconds)
        FROM reporting.daily_installs d
        WHERE reporting.day_start(d.day) >= COALESCE(since, '-infinity') AND reporting.day_start(d.day) < COALESCE(until, 'infinity')
        GROUP BY d.org_id, d.app_version_id
    ) AS v
    GROUP BY v.org_id, v.app_version_id
) AS g ON g.org_id = j.org_id AND g.app_version_id = j.app_version_id
$$;

-- The views over all time, one per windowed function.
CREATE VIEW reporting.org_success_rates AS SELECT * FROM reporting.org_success_rates_between();
COMMENT ON VIEW reporting.org_success_rates IS 'Per org: jobs by final status, success rate = completed / (completed + failed), median test duration, median and p95 queue wait (seconds). Windowed: org_success_rates_between(since, until).';

CREATE VIEW reporting.flaky_tests AS SELECT * FROM reporting.flaky_tests_between();
COMMENT ON VIEW reporting.flaky_tests IS 'Per org and test path that failed at least once: runs (passed or test_failed attempts), failures, passes right after a failure on the same app version and target, flake rate = those / runs. Windowed: flaky_tests_between(since, until).';

CREATE VIEW reporting.app_versions AS SELECT * FROM reporting.app_versions_between();
COMMENT ON VIEW reporting.app_versions IS 'Per org and app version: distinct tests, finished jobs by status, pass rate, installs (groups run), install and test seconds. Windowed: app_versions_between(since, until).';
