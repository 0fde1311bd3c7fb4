"""jobs: no index led by status over all jobs; one over the few running, failed and cancelled ones

`ix_jobs_status_created_at (status, created_at)` misled the planner on the hot path. Right after a burst of
submissions (a CI pipeline's thousands of tests, before autovacuum has analyzed `jobs`), the statistics say
pending jobs are rare, so the planner read a group's pending jobs (`group_jobs_to_run`, the batched start and
run statements) by walking every pending job in this index and filtering on the group: 240 pages and 1.5-7 ms
per statement instead of a dozen pages through `ix_jobs_active_by_group`, on every claim and every report,
for as long as the burst lasted (docs/performance.md). Being on every column of every row, it also took an
entry for each job's every status change.

What it served, and what serves it now:
- the running jobs (stats, `qgjob jobs list --status running`) and the failed or cancelled ones, newest first:
  `ix_jobs_running_failed_cancelled (status, created_at)`, partial, so a job that completes (the common end)
  or waits (pending) never enters it, and a query for pending jobs cannot use it;
- pending jobs (queue depth, oldest wait): `ix_jobs_active_by_group`, already there;
- completed jobs of an org: `ix_jobs_org_id_created_at`; in a time window: `ix_jobs_finished_at`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEW = "status IN ('running', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_running_failed_cancelled", "jobs", ["status", "created_at"], postgresql_where=sa.text(FEW)
    )
    op.drop_index("ix_jobs_status_created_at", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status_created_at", "jobs", ["status", "created_at"])
    op.drop_index("ix_jobs_running_failed_cancelled", table_name="jobs", postgresql_where=sa.text(FEW))
