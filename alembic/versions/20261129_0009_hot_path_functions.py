"""the agents' hot path as stored functions: a claim, or a report of finished runs, is one statement

An agent's claim used to be six round trips (BEGIN, four statements, COMMIT) and a progress report as many, each
statement costing the server ~80-150 us of Python in the driver (array parameters dumped element by element)
against the few tens of microseconds PostgreSQL spent on it. As PL/pgSQL functions, called in autocommit, each is
one statement: one round trip, one commit, plans cached per connection, and a batch passed as one JSON document.
(procrastinate keeps its fetch and finish in stored functions for the same reasons.) docs/performance.md has
the measurements.

    qualgent_claim(agent, targets, lease)        the best pending group the agent can run, and its sign of life,
                                                 whole, with its jobs in run order; `deferred` lists jobs still in
                                                 backoff, which the caller puts back in the queue
    qualgent_hold_claim(agent, group, token, lease)   fencing: is the claim still this agent's? extends its lease
    qualgent_run_jobs(agent, group, runs)        runs started and finished within one report that end their job:
                                                 pending to final in one row version, the attempt written once
    qualgent_job_error(outcome, error, attempts)   what a job that ends says went wrong (also for finish_runs)
    qualgent_close_group(group)                  the group is done once none of its jobs is left to run; its agent
                                                 is idle unless it holds another
    qualgent_report_runs(agent, group, token, lease, runs)   the three above, all or nothing (SQLSTATE QGRUN when a
                                                 run does not end its job: the caller takes the general path)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# enable_sort is off while the claim is planned: with statistics older than a burst of submissions (autovacuum has
# not analyzed yet) the planner believes few groups are pending and would sort all of them on every claim instead
# of walking ix_job_groups_claimable in order, which is what LIMIT 1 wants.
CLAIM = """
CREATE FUNCTION qualgent_claim(p_agent_id uuid, p_targets text[], p_lease_seconds double precision)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
AS $$
DECLARE
    agent_status text;
    claimed record;
    job_list jsonb;
    deferred jsonb;
BEGIN
    SELECT status INTO agent_status FROM agents WHERE id = p_agent_id;
    IF agent_status IS NULL THEN
        RETURN jsonb_build_object('agent_status', NULL);  -- unknown
    END IF;
    IF agent_status = 'offline' THEN  -- set offline by an operator, or deregistered: a sign of life, no work
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- The CTE is a fence: the planner cannot turn LIMIT 1 into "update every match". FOR NO KEY UPDATE lets jobs
    -- and attempts keep referencing the row meanwhile; SKIP LOCKED lets claims run side by side.
    WITH candidate AS (
        SELECT id
        FROM job_groups
        WHERE status = 'pending' AND target = ANY(p_targets) AND available_at <= now()
        ORDER BY tier, best_priority, oldest_job_at, id
        LIMIT 1
        FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE job_groups g
    SET status = 'running', agent_id = p_agent_id, lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => p_lease_seconds), claimed_at = now()
    FROM candidate
    WHERE g.id = candidate.id
    RETURNING g.id, g.org_id, g.app_version_id, g.target, g.lease_token, g.lease_expires_at INTO claimed;
    IF claimed.id IS NULL THEN
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- Runnable by the database's clock, the clock the claim chose the group by; in run order.
    SELECT jsonb_agg(jsonb_build_object(
               'id', j.id, 'test_path', j.test_path, 'priority', j.priority, 'attempts', j.attempts,
               'max_attempts', j.max_attempts, 'timeout_seconds', j.timeout_seconds)
               ORDER BY j.priority, j.created_at, j.id) FILTER (WHERE j.run_after <= now()),
           jsonb_agg(j.id) FILTER (WHERE j.run_after > now())
    INTO job_list, deferred
    FROM jobs j
    WHERE j.group_id = claimed.id AND j.status = 'pending';
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
        'deferred', COALESCE(deferred, '[]'::jsonb));
END
$$
"""

HOLD_CLAIM = """
CREATE FUNCTION qualgent_hold_claim(p_agent_id uuid, p_group_id uuid, p_token uuid, p_lease_seconds double precision)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- The row stays locked by this UPDATE until the caller's transaction ends.
    UPDATE job_groups
    SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
    WHERE id = p_group_id AND status = 'running' AND lease_token = p_token AND agent_id = p_agent_id;
    RETURN FOUND;
END
$$
"""

# What a job that ends says went wrong: the agent's words, or for an infrastructure failure it did not explain,
# how many attempts it took. Used by qualgent_run_jobs and the finish_runs statement alike.
JOB_ERROR = """
CREATE FUNCTION qualgent_job_error(p_outcome text, p_error text, p_attempts integer)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
SELECT CASE WHEN p_outcome = 'infra_error' AND COALESCE(p_error, '') = ''
            THEN format('infrastructure error after %s attempt(s)', p_attempts)
            ELSE p_error END
$$
"""

# A first run needs no lookup in attempts to know it is not flaky (and with statistics older than a burst the
# planner made that lookup through every finished attempt).
RUN_JOBS = """
CREATE FUNCTION qualgent_run_jobs(p_agent_id uuid, p_group_id uuid, p_runs jsonb)
RETURNS SETOF jobs
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    WITH r AS (
        SELECT *
        FROM jsonb_to_recordset(p_runs) AS r (id uuid, elapsed_ms bigint, outcome text, exit_code integer,
                                              duration_ms bigint, output_tail text, error text)
    ), ran AS (
        UPDATE jobs j
        SET status = CASE WHEN r.outcome = 'passed' THEN 'completed' ELSE 'failed' END,
            attempts = j.attempts + 1, agent_id = p_agent_id,
            started_at = now() - make_interval(secs => r.elapsed_ms / 1000.0),
            finished_at = now(), updated_at = now(), exit_code = r.exit_code, duration_ms = r.duration_ms,
            output_tail = r.output_tail,
            error = qualgent_job_error(r.outcome, r.error, j.attempts + 1),
            flaky = (r.outcome = 'passed' AND j.attempts > 0 AND EXISTS (
                SELECT 1 FROM attempts a WHERE a.job_id = j.id AND a.outcome = 'test_failed'))
        FROM r
        WHERE j.id = r.id AND j.group_id = p_group_id AND j.status = 'pending'
          -- the run ends the job: it passed, or failed with nothing left to try
          AND (r.outcome = 'passed'
               OR (r.outcome = 'test_failed' AND j.test_retries = 0)
               OR (r.outcome = 'infra_error' AND j.attempts + 1 >= j.max_attempts))
        RETURNING j AS job, r.outcome AS run_outcome, r.error AS run_error
    ), recorded AS (
        INSERT INTO attempts (job_id, number, agent_id, group_id, started_at, finished_at, outcome, exit_code,
                              duration_ms, error)
        SELECT (ran.job).id, (ran.job).attempts, p_agent_id, p_group_id, (ran.job).started_at,
               (ran.job).finished_at, ran.run_outcome, (ran.job).exit_code, (ran.job).duration_ms, ran.run_error
        FROM ran
    ), notified AS (
        SELECT qualgent_notify_jobs((ran.job).status, array_agg((ran.job).id)) AS sent
        FROM ran
        GROUP BY (ran.job).status
    )
    SELECT (ran.job).*
    FROM ran
    WHERE (SELECT count(*) FROM notified) >= 0;  -- read, so that it runs: a CTE that only selects runs when read
END
$$
"""

# The NOT EXISTS sees this transaction's own earlier writes (a new statement, a new snapshot in the function).
CLOSE_GROUP = """
CREATE FUNCTION qualgent_close_group(p_group_id uuid)
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
        RETURN false;
    END IF;
    UPDATE agents a SET status = 'idle'
    WHERE a.id = holder AND a.status = 'busy'
      AND NOT EXISTS (SELECT 1 FROM job_groups o WHERE o.agent_id = a.id AND o.status = 'running');
    RETURN true;
END
$$
"""

# For metrics and the agent's answer the caller needs a few fields of each job, not whole rows.
REPORT_RUNS = """
CREATE FUNCTION qualgent_report_runs(p_agent_id uuid, p_group_id uuid, p_token uuid,
                                     p_lease_seconds double precision, p_runs jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ran jsonb;
    ran_count integer;
BEGIN
    IF NOT qualgent_hold_claim(p_agent_id, p_group_id, p_token, p_lease_seconds) THEN
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
    RETURN jsonb_build_object('ran', COALESCE(ran, '[]'::jsonb), 'group_done', qualgent_close_group(p_group_id));
END
$$
"""

FUNCTIONS = {
    "qualgent_job_error(text, text, integer)": JOB_ERROR,
    "qualgent_claim(uuid, text[], double precision)": CLAIM,
    "qualgent_hold_claim(uuid, uuid, uuid, double precision)": HOLD_CLAIM,
    "qualgent_run_jobs(uuid, uuid, jsonb)": RUN_JOBS,
    "qualgent_close_group(uuid)": CLOSE_GROUP,
    "qualgent_report_runs(uuid, uuid, uuid, double precision, jsonb)": REPORT_RUNS,
}


def upgrade() -> None:
    for definition in FUNCTIONS.values():
        op.execute(definition)


def downgrade() -> None:
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
