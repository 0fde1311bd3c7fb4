"""the one-statement report writes its group's row once, and a failed job's error text is inlined

qualgent_report_runs first extended the claim's lease (an UPDATE of the group's row, qualgent_hold_claim), then,
when its runs closed the group, updated the same row again (qualgent_close_group). A row updated a second time in
the transaction that wrote its current version makes PostgreSQL check every foreign key of the table whether or
not the key changed: a lookup of the org and of the agent, each with a FOR KEY SHARE row lock, for every group an
agent finished (seen through auto_explain). The org's row is the same for all of an org's agents: reports that
overlap share that lock, which PostgreSQL records as a MultiXact. Now the report locks the group's row (FOR NO KEY UPDATE, the same fencing check: this
agent, this token, still running) without writing it, and writes it once: closed, or its lease extended.

qualgent_job_error called format(), which is STABLE, so PostgreSQL could not inline the IMMUTABLE function and ran
a small executor for it on every row a report wrote. The same text is built with || now, and it is inlined.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 12:30:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

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

REPORT_RUNS = """
CREATE OR REPLACE FUNCTION qualgent_report_runs(p_agent_id uuid, p_group_id uuid, p_token uuid,
                                                p_lease_seconds double precision, p_runs jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ran jsonb;
    ran_count integer;
    closed boolean;
BEGIN
    -- Fencing, as qualgent_hold_claim does it, but without writing the row: it is written once, below.
    PERFORM 1 FROM job_groups
    WHERE id = p_group_id AND status = 'running' AND lease_token = p_token AND agent_id = p_agent_id
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
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
    closed := qualgent_close_group(p_group_id);
    IF NOT closed THEN
        UPDATE job_groups SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
        WHERE id = p_group_id;
    END IF;
    RETURN jsonb_build_object('ran', COALESCE(ran, '[]'::jsonb), 'group_done', closed);
END
$$
"""


def _as_0009_made_them() -> ModuleType:
    path = Path(__file__).with_name("20261129_0009_hot_path_functions.py")
    spec = importlib.util.spec_from_file_location("qualgent_migration_0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(JOB_ERROR)
    op.execute(REPORT_RUNS)


def downgrade() -> None:
    before = _as_0009_made_them()
    op.execute(before.JOB_ERROR.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute(before.REPORT_RUNS.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
