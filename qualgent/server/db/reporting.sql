-- The reporting views' reports (qualgent.server.reporting.queries). Each report is a windowed function of the
-- `reporting` schema (`<name>_between(since, until)`); a NULL bound is open.

-- name: report_settings
-- For the report's own transaction: sorting a large history wants more memory than the server's default, and
-- all orgs over all time takes longer than the API's statement timeout.
SELECT set_config('work_mem', :work_mem, true), set_config('statement_timeout', :timeout, true);

-- name: report
-- Template: {function} is one of the reporting functions, {order_by} its fixed order; {org} is org_filter or
-- no_filter.
SELECT * FROM {function}(CAST(:since AS timestamptz), CAST(:until AS timestamptz))
WHERE {org}
ORDER BY {order_by}
LIMIT :limit;

-- name: org_filter
org_id = :org_id;

-- name: job_org_filter
j.org_id = :org_id;

-- name: no_filter
TRUE;

-- name: recent_results
-- The latest finished jobs in the window, newest first (ix_jobs_finished_at read backwards). Template: {org} is
-- job_org_filter or no_filter.
SELECT j.id, j.org_id, j.app_version_id, j.target, j.test_path, j.status, j.attempts, j.duration_ms,
       j.exit_code, j.agent_id, j.group_id, j.finished_at
FROM jobs j
WHERE j.status IN ('completed', 'failed', 'cancelled')
  AND j.finished_at >= COALESCE(CAST(:since AS timestamptz), '-infinity')
  AND j.finished_at < COALESCE(CAST(:until AS timestamptz), 'infinity')
  AND {org}
ORDER BY j.finished_at DESC
LIMIT :limit;
