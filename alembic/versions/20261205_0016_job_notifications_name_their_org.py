"""a job-change notification names the org of its jobs, so event streams are filtered before any read

An event stream (GET /api/events) of one org read every changed job from the database on each notification and only
then dropped other orgs' jobs: with a thousand streams of one org open, every other org's submit cost the server a
thousand reads. Now each notification carries the org of its jobs, and a server hands it only to the streams that
may see that org (qualgent.server.notify.hub); other orgs' changes cost a stream nothing.

    qualgent_notify_org_jobs(status, org_id, ids)   the payload, {"kind": "jobs", "status", "org_id", "ids"}, 150
                                                    ids at most per notification; the hot path's statements
                                                    (start_jobs, finish_runs, qualgent_run_jobs) group by org and
                                                    call it, reading nothing more
    qualgent_notify_jobs(status, ids)               the same for ids of any orgs: looks their orgs up (submit,
                                                    cancel, re-run and retry, off the hot path)

Both are defined in qualgent/server/db/schema.sql; this revision stays so that a database at 0016 knows where it is.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Functions only, which qualgent/server/db/schema.sql holds now: nothing left for the migration to do."""


def downgrade() -> None:
    """See upgrade()."""
