"""the baseline: every table, type, index and constraint as of revision 0012, in one step

Migrations 0001-0012 (never released) are squashed into this one, which keeps 0012's revision id: a database the
old chain brought to 0012 is at the baseline and goes on with 0013. A database at an older revision cannot be
upgraded by this qgjob (qualgent.server.db.migrate.SchemaTooOld says what to do).

The tables come from 20261129_0012_baseline.sql (pg_dump --schema-only of a database the old chain made, without
its functions, triggers and views). Functions, triggers and views are not migrations' business: they come from
qualgent/server/db/schema.sql, applied after every upgrade to head (docs/design.md, "Schema and migrations").

Revision ID: 0012
Revises:
Create Date: 2026-11-29 14:00:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0012"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "attempts", "job_groups", "agents", "api_tokens", "submissions", "orgs")


def upgrade() -> None:
    op.execute(Path(__file__).with_suffix(".sql").read_text(encoding="utf-8"))


def downgrade() -> None:
    op.execute("DROP SCHEMA reporting CASCADE")
    op.execute(f"DROP TABLE {', '.join(TABLES)}")
    op.execute("DROP TYPE job_priority, org_tier")
