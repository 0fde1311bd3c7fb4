"""agents.deregistered_at: an agent that said goodbye leaves the live views

A deregistered agent was kept with status `offline` for history (attempts name it), and so lingered in `qgjob top`,
`GET /api/agents` and `/api/health/detailed` for ever, beside agents that went silent and may come back. The time of
the goodbye tells them apart: the views leave such agents out (`GET /api/agents?include_deregistered=true` lists
them), an agent merely silent for a lease is shown offline.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("deregistered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("agents", "deregistered_at")
