"""a progress report writes its group's row once; a failed job's error text is inlined

Every progress report first held its claim with qualgent_hold_claim, an UPDATE that checked the claim and extended
its lease, and the report that finished the group then updated the same row again (qualgent_close_group). A row
updated a second time in the transaction that wrote its current version makes PostgreSQL check every foreign key
of the table whether or not the key changed: a lookup of the org and of the agent, each with a FOR KEY SHARE row
lock, for every group an agent finished (seen through auto_explain). The org's row is the same for all of an
org's agents: reports that overlap share that lock, which PostgreSQL records as a MultiXact.

Now the two functions split the work differently, for the one-statement report and the general path alike:
    qualgent_hold_claim(agent, group, token)     fencing only: the claim is this agent's, under this token, still
                                                 running; the row is locked (FOR NO KEY UPDATE), not written
    qualgent_close_group(group, lease)           the report's one write of the group's row: done once none of its
                                                 jobs is left to run (and its agent idle unless it holds another),
                                                 else its lease extended

qualgent_job_error called format(), which is STABLE, so PostgreSQL could not inline the IMMUTABLE function and ran
a small executor for it on every row a report wrote. The same text is built with || now, and it is inlined.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 12:30:00.000000
"""

from collections.abc import Sequence

from alembic import op
from qualgent.db.migrate import revision_module

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_ERROR = """
CREATE OR REPLACE FUNCTION qualgent_job_error(p_outcome text, p_error text, p_attempts integer)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
SELECT CASE WHEN p_outcome = 'infra_error' AND COALESCE(p_error, '') = ''
            THEN 'infrastructure error after ' || p_attempts::text || ' attempt(s)'
            ELSE p_error END
$$
"""

HOLD_CLAIM = """
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
$$
"""

# The NOT EXISTS sees this transaction's own earlier writes (a new statement, a new snapshot in the function).
CLOSE_GROUP = """
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
$$
"""

REPORT_RUNS = """
CREATE OR REPLACE FUNCTION qualgent_report_runs(p_agent_id uuid, p_group_id uuid, p_token uuid,
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
$$
"""

# plpgsql resolves the functions it calls when it runs, so their old signatures can go before the new ones come.
OLD_SIGNATURES = ("qualgent_hold_claim(uuid, uuid, uuid, double precision)", "qualgent_close_group(uuid)")
NEW_SIGNATURES = ("qualgent_hold_claim(uuid, uuid, uuid)", "qualgent_close_group(uuid, double precision)")


def upgrade() -> None:
    for signature in OLD_SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    for definition in (JOB_ERROR, HOLD_CLAIM, CLOSE_GROUP, REPORT_RUNS):
        op.execute(definition)


def downgrade() -> None:
    before = revision_module("20261129_0009_hot_path_functions.py")
    for signature in NEW_SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    for definition in (before.JOB_ERROR, before.HOLD_CLAIM, before.CLOSE_GROUP, before.REPORT_RUNS):
        op.execute(definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
