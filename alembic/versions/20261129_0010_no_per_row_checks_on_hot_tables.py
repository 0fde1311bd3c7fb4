"""jobs and attempts: no foreign-key check per written row; attempts keyed by (job, number)

Every run a report records updates a job and inserts its attempt, and PostgreSQL checked three foreign keys for
it, each a lookup and a row lock in another table: jobs.agent_id and attempts.agent_id (agents are never deleted,
and the agent id written is the one the claim, locked in the same transaction, names) and attempts.job_id (the
attempt is written by the very statement that updates its job; retention deletes a job's attempts before the
job, so the cascade is not needed). attempts also had a bigint id no one reads, with its sequence and an index,
beside the unique (job_id, number) every query uses: that pair is the primary key now. Together, about a third
of PostgreSQL's work per reported run (docs/performance.md). River's and Oban's job tables carry no foreign
keys for the same reason. job_groups.agent_id keeps its key: a group is claimed once, not per job.

reporting.flaky_tests_between ordered a test's runs by (finish time, attempt id); it now breaks ties by start
time, attempt number and job id, as retention's fold does (qualgent/db/retention.sql).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FLAKY = "reporting.flaky_tests_between(timestamptz, timestamptz)"
BY_ID = "ORDER BY a.finished_at, a.id)"
BY_KEY = "ORDER BY a.finished_at, a.started_at, a.number, a.job_id)"


def _reorder_runs(old: str, new: str) -> None:
    """Redefine the function with its runs ordered by `new` instead of `old`, the rest of it as it stands: done by
    the database itself, so that `qgjob db upgrade --sql` prints it too."""
    op.execute(f"""
DO $$
DECLARE
    definition text := pg_get_functiondef('{FLAKY}'::regprocedure);
BEGIN
    IF position('{old}' IN definition) = 0 THEN
        RAISE EXCEPTION '{FLAKY} does not order its runs as expected';
    END IF;
    EXECUTE replace(definition, '{old}', '{new}');
END
$$""")


def upgrade() -> None:
    _reorder_runs(BY_ID, BY_KEY)
    op.drop_constraint("fk_jobs_agent_id_agents", "jobs", type_="foreignkey")
    op.drop_constraint("fk_attempts_agent_id_agents", "attempts", type_="foreignkey")
    op.drop_constraint("fk_attempts_job_id_jobs", "attempts", type_="foreignkey")
    op.drop_constraint("pk_attempts", "attempts", type_="primary")
    op.drop_constraint("uq_attempts_job_id_number", "attempts", type_="unique")
    op.drop_column("attempts", "id")
    op.create_primary_key("pk_attempts", "attempts", ["job_id", "number"])


def downgrade() -> None:
    op.drop_constraint("pk_attempts", "attempts", type_="primary")
    op.add_column("attempts", sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
    op.execute("ALTER TABLE attempts ALTER COLUMN id DROP IDENTITY")
    op.execute("CREATE SEQUENCE attempts_id_seq OWNED BY attempts.id")
    op.execute("SELECT setval('attempts_id_seq', (SELECT COALESCE(max(id), 0) + 1 FROM attempts), false)")
    op.execute("ALTER TABLE attempts ALTER COLUMN id SET DEFAULT nextval('attempts_id_seq')")
    op.create_primary_key("pk_attempts", "attempts", ["id"])
    op.create_unique_constraint("uq_attempts_job_id_number", "attempts", ["job_id", "number"])
    op.create_foreign_key("fk_attempts_job_id_jobs", "attempts", "jobs", ["job_id"], ["id"], ondelete="CASCADE")
    op.create_foreign_key("fk_attempts_agent_id_agents", "attempts", "agents", ["agent_id"], ["id"])
    op.create_foreign_key("fk_jobs_agent_id_agents", "jobs", "agents", ["agent_id"], ["id"])
    _reorder_runs(BY_KEY, BY_ID)
