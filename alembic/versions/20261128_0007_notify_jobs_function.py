"""qualgent_notify_jobs(status, ids): the one definition of a job-change notification's payload

Every job state change announces itself on the `qualgent` channel, ids only, at most 150 ids per notification
(PostgreSQL's payload limit is 8,000 bytes). The set-based hot-path statements (start_jobs, finish_runs, run_jobs)
and the Python side (qualgent.queue._common.notify_jobs) all call this function, so the format lives in one place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 06:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_JOBS = """
CREATE FUNCTION qualgent_notify_jobs(status text, ids uuid[]) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
SELECT count(*)::integer
FROM (
    SELECT pg_notify('qualgent', json_build_object('kind', 'jobs', 'status', status, 'ids', json_agg(u.id))::text)
    FROM unnest(ids) WITH ORDINALITY AS u (id, n)
    GROUP BY (u.n - 1) / 150
) AS sent
$$
"""


def upgrade() -> None:
    op.execute(NOTIFY_JOBS)


def downgrade() -> None:
    op.execute("DROP FUNCTION qualgent_notify_jobs(text, uuid[])")
