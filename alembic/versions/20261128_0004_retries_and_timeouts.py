"""jobs: test retries, a per-job run timeout, the flaky mark, and the attempt budget a re-run grants

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("test_retries", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("timeout_seconds", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("flaky", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("jobs", sa.Column("attempt_budget", sa.Integer(), server_default="3", nullable=False))
    op.execute("UPDATE jobs SET attempt_budget = max_attempts")
    op.create_check_constraint(
        op.f("ck_jobs_retry_settings"),
        "jobs",
        "test_retries >= 0 AND attempt_budget >= 1 AND (timeout_seconds IS NULL OR timeout_seconds > 0)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_retry_settings"), "jobs", type_="check")
    for column in ("attempt_budget", "flaky", "timeout_seconds", "test_retries"):
        op.drop_column("jobs", column)
