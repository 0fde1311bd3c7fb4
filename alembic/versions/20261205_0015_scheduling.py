"""scheduling that uses what it knows: capacity caps, bounded starvation, fair share, build affinity

    targets (target, max_running)        a cap on the groups running at once on a target (no row, or NULL: none)
    orgs.max_running                     the same per org
    orgs.last_claimed_at                 when a group of the org was last claimed: fair share
    ix_job_groups_running_target/_org    running groups by target / org: the caps' counts read a few index entries
    ix_job_groups_aging                  pending groups by age: the groups past the aging bound, oldest first
    test_durations                       per (org, target, test path): finished runs, a moving mean of their
                                         duration (the last ~10 weigh most), when it last failed; upserted once
                                         per finished group (qualgent.server.queue.history), never per job row
    build_installs                       per (org, app version, target): how long its first group took from claim
                                         to first start (the install), for estimates

qualgent_claim gains three arguments (with defaults, so a three-argument call keeps working): the aging bound in
seconds, the builds the agent holds (a JSON array of {target, org_id, app_version_id}) and the smallest chunk of
expected work a group is split into when agents of its target are idle (the jobs split off are answered as `split`
and moved back to the key's pending group by the caller, as jobs in backoff are). The group's jobs come in a new run
order: priority, then tests failed in the last day, then the longest expected. docs/design.md
("3. The claim, line by line") gives the ranking as a formula. Caps are counted under a transaction-level advisory
lock per target and per org, taken only when the candidate's target or org has a cap, inside the claim's own
transaction: two claims (on any servers) for a capped key take turns for the rest of their transactions, and the
second one counts the first one's group. Advisory locks, not the orgs or targets rows, so that a cap's lock never
meets a foreign-key check, a tier change or a submission. qualgent_claim itself is in qualgent/server/db/schema.sql.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "targets",
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("target IN ('emulator', 'device', 'browserstack')", name=op.f("ck_targets_target")),
        sa.CheckConstraint("max_running >= 0", name=op.f("ck_targets_max_running")),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_targets")),
    )
    op.create_table(
        "test_durations",
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("test_path", sa.Text(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("mean_ms", sa.Float(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "target", "test_path", name=op.f("pk_test_durations")),
    )
    op.create_table(
        "build_installs",
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("app_version_id", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("install_ms", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "app_version_id", "target", name=op.f("pk_build_installs")),
    )
    op.add_column("orgs", sa.Column("max_running", sa.Integer(), nullable=True))
    op.add_column("orgs", sa.Column("last_claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_orgs_max_running"), "orgs", "max_running >= 0")
    op.create_index(
        "ix_job_groups_running_target", "job_groups", ["target"], postgresql_where=sa.text("status = 'running'")
    )
    op.create_index(
        "ix_job_groups_running_org", "job_groups", ["org_id"], postgresql_where=sa.text("status = 'running'")
    )
    op.create_index(
        "ix_job_groups_aging", "job_groups", ["oldest_job_at", "id"], postgresql_where=sa.text("status = 'pending'")
    )


def downgrade() -> None:
    op.drop_index("ix_job_groups_aging", table_name="job_groups")
    op.drop_index("ix_job_groups_running_org", table_name="job_groups")
    op.drop_index("ix_job_groups_running_target", table_name="job_groups")
    op.drop_constraint(op.f("ck_orgs_max_running"), "orgs", type_="check")
    op.drop_column("orgs", "last_claimed_at")
    op.drop_column("orgs", "max_running")
    op.drop_table("targets")
    op.drop_table("build_installs")
    op.drop_table("test_durations")
