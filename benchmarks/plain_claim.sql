-- qualgent_claim as migration 0009 made it (the plain tier/priority/age order), kept for the scheduling
-- bench's comparison; the live claim is in qualgent/server/db/schema.sql.
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
