"""a job-change notification names the org of its jobs, so event streams are filtered before any read

An event stream (GET /api/events) of one org read every changed job from the database on each notification and only
then dropped other orgs' jobs: with a thousand streams of one org open, every other org's submit cost the server a
thousand reads. Now each notification carries the org of its jobs, and a server hands it only to the streams that
may see that org (qualgent.notify.hub); other orgs' changes cost a stream nothing.

    qualgent_notify_org_jobs(status, org_id, ids)   the payload, {"kind": "jobs", "status", "org_id", "ids"}, 150
                                                    ids at most per notification; the hot path's statements
                                                    (start_jobs, finish_runs, qualgent_run_jobs) group by org and
                                                    call it, reading nothing more
    qualgent_notify_jobs(status, ids)               the same for ids of any orgs: looks their orgs up (submit,
                                                    cancel, re-run and retry, off the hot path)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

from alembic import op
from qualgent.db.migrate import revision_module

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_ORG_JOBS = """
CREATE FUNCTION qualgent_notify_org_jobs(status text, org_id text, ids uuid[]) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
SELECT count(*)::integer
FROM (
    SELECT pg_notify('qualgent', json_build_object(
        'kind', 'jobs', 'status', status, 'org_id', org_id, 'ids', json_agg(u.id))::text)
    FROM unnest(ids) WITH ORDINALITY AS u (id, n)
    GROUP BY (u.n - 1) / 150
) AS sent
$$
"""

# $1 and $2: in a SQL function a column name wins over a parameter's, and jobs has a `status`.
NOTIFY_JOBS = """
CREATE OR REPLACE FUNCTION qualgent_notify_jobs(status text, ids uuid[]) RETURNS integer
LANGUAGE sql VOLATILE
AS $$
SELECT COALESCE(sum(qualgent_notify_org_jobs($1, o.org_id, o.ids)), 0)::integer
FROM (
    SELECT j.org_id, array_agg(j.id ORDER BY j.id) AS ids
    FROM jobs j
    WHERE j.id = ANY($2)
    GROUP BY j.org_id
) AS o
$$
"""

_RUN_JOBS_NOTIFIED = """    ), notified AS (
        SELECT qualgent_notify_jobs((ran.job).status, array_agg((ran.job).id)) AS sent
        FROM ran
        GROUP BY (ran.job).status
    )"""
_RUN_JOBS_NOTIFIED_BY_ORG = """    ), notified AS (
        SELECT qualgent_notify_org_jobs((ran.job).status, (ran.job).org_id, array_agg((ran.job).id)) AS sent
        FROM ran
        GROUP BY (ran.job).status, (ran.job).org_id
    )"""


def _run_jobs(notified: str, instead: str) -> str:
    before = revision_module("20261129_0009_hot_path_functions.py").RUN_JOBS
    assert notified in before, "qualgent_run_jobs of 0009 changed: update this migration"
    return before.replace(notified, instead).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


def upgrade() -> None:
    op.execute(NOTIFY_ORG_JOBS)
    op.execute(NOTIFY_JOBS)
    op.execute(_run_jobs(_RUN_JOBS_NOTIFIED, _RUN_JOBS_NOTIFIED_BY_ORG))


def downgrade() -> None:
    before = revision_module("20261128_0007_notify_jobs_function.py").NOTIFY_JOBS
    op.execute(_run_jobs(_RUN_JOBS_NOTIFIED, _RUN_JOBS_NOTIFIED))
    op.execute(before.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute("DROP FUNCTION qualgent_notify_org_jobs(text, text, uuid[])")
