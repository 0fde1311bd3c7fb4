-- The queue's figures (qualgent.server.queue.stats), the dashboard's pages (qualgent.server.queue.overview), the jobs a filter
-- chooses (qualgent.server.queue.selection) and the health check. The queue's figures read pending and running rows only,
-- through their partial indexes, never the finished history: their cost follows the size of the queue.

-- name: queue_depth
-- Pending jobs of groups no agent holds yet: the queue proper.
SELECT g.target, j.priority, g.tier, count(*) AS jobs,
       count(*) FILTER (WHERE j.run_after <= now()) AS ready
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending'
GROUP BY 1, 2, 3;

-- name: group_counts
-- One query per status so each reads its own partial index.
SELECT target, 'pending' AS status, count(*) AS groups FROM job_groups WHERE status = 'pending' GROUP BY target
UNION ALL
SELECT target, 'running', count(*) FROM job_groups WHERE status = 'running' GROUP BY target;

-- name: running_by_target
SELECT target, count(*) AS jobs FROM jobs WHERE status = 'running' GROUP BY target;

-- name: running_count
SELECT count(*) FROM jobs WHERE status = 'running';

-- name: oldest_wait
SELECT target, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS seconds
FROM jobs WHERE status = 'pending' AND run_after <= now()
GROUP BY target;

-- name: agents_by_target
-- Status as shown (qualgent_agents, schema.sql); deregistered ones are gone.
SELECT t.target, a.status, count(*) AS agents
FROM qualgent_agents(:offline_after) a, unnest(a.targets) AS t(target)
WHERE a.deregistered_at IS NULL
GROUP BY 1, 2;

-- name: agents_by_status
SELECT status, count(*) AS agents
FROM qualgent_agents(:offline_after)
WHERE deregistered_at IS NULL
GROUP BY 1;

-- name: pending_by
-- Template: {column} is one of j.priority, j.target, j.org_id, g.tier.
SELECT {column} AS key, count(*) AS n
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending'
GROUP BY 1 ORDER BY 1;

-- name: groups_by_status
SELECT g.id, g.org_id, g.app_version_id, g.target, g.status, g.tier, g.best_priority, g.agent_id,
       g.oldest_job_at, g.claimed_at, g.lease_expires_at,
       count(j.id) FILTER (WHERE j.status = 'pending') AS pending,
       count(j.id) FILTER (WHERE j.status = 'running') AS running
FROM job_groups g LEFT JOIN jobs j ON j.group_id = g.id AND j.status IN ('pending', 'running')
WHERE g.status = :status
GROUP BY g.id
ORDER BY g.tier, g.best_priority, g.oldest_job_at
LIMIT :limit;

-- name: ping
SELECT 1;

-- name: schema_revision
SELECT version_num FROM alembic_version;

-- name: org_queue
-- The dashboard: pending jobs by target and tier (of one org, or of all when org_id is NULL).
SELECT g.target, g.tier::text AS tier, count(*) AS jobs, count(*) FILTER (WHERE j.run_after <= now()) AS ready
FROM jobs j JOIN job_groups g ON g.id = j.group_id
WHERE j.status = 'pending' AND g.status = 'pending' AND (CAST(:org_id AS text) IS NULL OR j.org_id = :org_id)
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: org_counts
SELECT (SELECT count(*) FROM jobs
        WHERE status = 'pending' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS pending,
       (SELECT count(*) FROM jobs
        WHERE status = 'running' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS running,
       (SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM jobs
        WHERE status = 'pending' AND run_after <= now()
          AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)) AS oldest_wait_seconds;

-- name: running_groups
SELECT g.id, g.org_id, g.app_version_id, g.target, g.agent_id, a.name AS agent_name, g.claimed_at,
       (SELECT count(*) FROM jobs j WHERE j.group_id = g.id) AS total,
       (SELECT count(*) FROM jobs j
        WHERE j.group_id = g.id AND j.status IN ('completed', 'failed', 'cancelled')) AS done,
       (SELECT count(*) FROM jobs j WHERE j.group_id = g.id AND j.status = 'failed') AS failed
FROM job_groups g LEFT JOIN agents a ON a.id = g.agent_id
WHERE g.status = 'running' AND (CAST(:org_id AS text) IS NULL OR g.org_id = :org_id)
ORDER BY g.claimed_at
LIMIT :limit;

-- name: last_hour
SELECT count(*) AS finished,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE duration_ms IS NOT NULL) AS median_ms
FROM jobs
WHERE finished_at >= now() - interval '1 hour' AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id);

-- name: group_page
SELECT g.id, g.org_id, g.app_version_id, g.target, g.status, g.tier::text AS tier, g.best_priority::text
       AS best_priority, g.agent_id, a.name AS agent_name, g.oldest_job_at, g.claimed_at, g.lease_expires_at,
       g.finished_at
FROM job_groups g LEFT JOIN agents a ON a.id = g.agent_id
WHERE g.id = :group_id;

-- name: group_page_jobs
SELECT id, org_id, test_path, status, attempts, max_attempts, duration_ms, flaky, error, started_at, finished_at
FROM jobs WHERE group_id = :group_id
ORDER BY started_at NULLS LAST, created_at, id
LIMIT :limit;

-- name: org_days
-- An org's days, from the live jobs and, for the days retention has pruned, from its daily rollups.
WITH live AS (
    SELECT (finished_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE status IN ('completed', 'failed')) AS decided,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE flaky) AS flaky,
           avg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL) / 1000.0 AS mean_seconds
    FROM jobs
    WHERE org_id = :org_id AND finished_at >= :since AND status IN ('completed', 'failed', 'cancelled')
    GROUP BY 1
), pruned AS (
    SELECT day, sum(completed + failed) AS decided, sum(completed) AS completed, sum(failed) AS failed,
           sum(flaky) AS flaky, sum(duration_seconds) / NULLIF(sum(durations), 0) AS mean_seconds
    FROM reporting.daily_job_stats
    WHERE org_id = :org_id AND day >= CAST(:since AS date)
    GROUP BY 1
)
SELECT day, sum(decided)::bigint AS decided, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       sum(flaky)::bigint AS flaky,
       sum(mean_seconds * decided) / NULLIF(sum(decided) FILTER (WHERE mean_seconds IS NOT NULL), 0) AS mean_seconds
FROM (SELECT * FROM live UNION ALL SELECT * FROM pruned) d
GROUP BY day ORDER BY day;

-- name: select_jobs
-- Template: {where} is a Selection's conditions (qualgent.server.queue.selection), ANDed; newest first, keyset-paginated.
SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit;

-- name: before_job
-- The keyset condition of a page: the jobs older than job :before.
(created_at, id) < (SELECT created_at, id FROM jobs WHERE id = :before);

-- name: pending_groups_among
SELECT id FROM job_groups WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' ORDER BY id;

-- name: lock_selected
-- Template: {where} as in select_jobs.
SELECT id FROM jobs WHERE {where} ORDER BY id FOR NO KEY UPDATE;

-- The conditions a Selection may combine into {where} (each names its one parameter).

-- name: where_org_id
org_id = :org_id;

-- name: where_app_version_id
app_version_id = :app_version_id;

-- name: where_group_id
group_id = :group_id;

-- name: where_target
target = :target;

-- name: where_statuses
status = ANY(CAST(:statuses AS text[]));

-- name: where_test_path
-- Any part of the path, case-insensitively; the parameter's own % and _ are escaped with a backslash.
test_path ILIKE :test_path ESCAPE '\';

-- name: where_true
TRUE;
