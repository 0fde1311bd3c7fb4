"""AppWright runs: a failed test's file:line on jobs and attempts; BrowserStack app uploads shared by agents

- jobs.error_location, attempts.error_location: where the first error of a run was raised ("path:line"), shown
  with the error by `qgjob status`, the wait output, JUnit and GitHub annotations. NULL when unknown.
- browserstack_apps: one row per (org, app version): the bs:// id App Automate answered for the build's upload,
  when it was uploaded (BrowserStack deletes apps 30 days later: agents renew before), and a short upload lease
  so two agents do not upload the same build at once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("error_location", sa.Text(), nullable=True))
    op.add_column("attempts", sa.Column("error_location", sa.Text(), nullable=True))
    op.create_table(
        "browserstack_apps",
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("app_version_id", sa.Text(), nullable=False),
        sa.Column("custom_id", sa.Text(), nullable=False),
        sa.Column("app_url", sa.Text(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upload_token", postgresql.UUID(), nullable=True),
        sa.Column("upload_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "app_version_id", name=op.f("pk_browserstack_apps")),
    )


def downgrade() -> None:
    op.drop_table("browserstack_apps")
    op.drop_column("attempts", "error_location")
    op.drop_column("jobs", "error_location")
