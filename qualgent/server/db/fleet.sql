-- Agents, orgs, capacity caps and BrowserStack builds (qualgent.server.queue.agents, orgs, capacity, browserstack).

-- name: agent
-- Its status as shown (qualgent_agents, schema.sql: offline once silent for `offline_after` seconds).
SELECT * FROM qualgent_agents(:offline_after) WHERE id = :agent_id;

-- name: list_agents
-- Newest first; `status` NULL: any; the deregistered ones only when asked for.
SELECT * FROM qualgent_agents(:offline_after) s
WHERE (:include_deregistered OR s.deregistered_at IS NULL)
  AND (CAST(:status AS text) IS NULL OR s.status = :status)
ORDER BY s.registered_at DESC
LIMIT :limit;

-- name: served_targets
-- Of the targets wanted, those some online agent serves.
SELECT DISTINCT t.target FROM qualgent_agents(:offline_after) a, unnest(a.targets) AS t(target)
WHERE a.deregistered_at IS NULL AND a.status <> 'offline' AND t.target = ANY(CAST(:wanted AS text[]));

-- name: register_agent
INSERT INTO agents (name, targets) VALUES (:name, :targets) RETURNING id;

-- name: set_agent_status_now
UPDATE agents SET status = :status, last_heartbeat_at = now() WHERE id = :agent_id RETURNING id;

-- name: deregister_agent
UPDATE agents SET status = 'offline', deregistered_at = now() WHERE id = :agent_id RETURNING id;

-- name: held_groups
SELECT id, lease_token FROM job_groups WHERE agent_id = :agent_id AND status = 'running';

-- name: set_agent_offline
UPDATE agents SET status = 'offline' WHERE id = :agent_id;

-- name: retier_pending_groups
-- An org's new tier re-ranks its waiting groups at once.
UPDATE job_groups SET tier = CAST(:tier AS org_tier)
WHERE org_id = :org_id AND status = 'pending' AND tier <> CAST(:tier AS org_tier);

-- name: upsert_org
INSERT INTO orgs (id, tier, max_running)
VALUES (:org_id, COALESCE(CAST(:tier AS org_tier), 'standard'), :max_running)
ON CONFLICT (id) DO UPDATE SET
    tier = COALESCE(CAST(:tier AS org_tier), orgs.tier),
    max_running = CASE WHEN :set_cap THEN EXCLUDED.max_running ELSE orgs.max_running END,
    updated_at = now()
RETURNING id, tier, max_running, created_at, updated_at;

-- name: org
SELECT id, tier, max_running, created_at, updated_at FROM orgs WHERE id = :org_id;

-- name: list_orgs
SELECT id, tier, max_running, created_at, updated_at FROM orgs ORDER BY id;

-- name: set_target_cap
INSERT INTO targets (target, max_running) VALUES (:target, :max_running)
ON CONFLICT (target) DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now();

-- name: list_targets
-- Each target asked for, in that order, with its cap, its running and pending groups and its online agents.
SELECT t.target, c.max_running,
       (SELECT count(*) FROM job_groups g WHERE g.status = 'running' AND g.target = t.target)::int AS running,
       (SELECT count(*) FROM job_groups g WHERE g.status = 'pending' AND g.target = t.target)::int AS pending,
       (SELECT count(*) FROM qualgent_agents(:offline_after) a
        WHERE t.target = ANY(a.targets) AND a.status <> 'offline')::int AS agents_online
FROM unnest(CAST(:targets AS text[])) WITH ORDINALITY AS t (target, n)
LEFT JOIN targets c ON c.target = t.target
ORDER BY t.n;

-- name: browserstack_app_row
INSERT INTO browserstack_apps (org_id, app_version_id, custom_id)
VALUES (:org_id, :app_version_id, :custom_id) ON CONFLICT DO NOTHING;

-- name: lock_browserstack_app
SELECT custom_id, app_url, uploaded_at, upload_until, now() AS now FROM browserstack_apps
WHERE org_id = :org_id AND app_version_id = :app_version_id FOR UPDATE;

-- name: lease_browserstack_upload
UPDATE browserstack_apps SET upload_token = :token, upload_until = now() + :lease, updated_at = now()
WHERE org_id = :org_id AND app_version_id = :app_version_id;

-- name: record_browserstack_upload
UPDATE browserstack_apps SET app_url = :app_url, uploaded_at = now(), upload_token = NULL,
       upload_until = NULL, updated_at = now()
WHERE org_id = :org_id AND app_version_id = :app_version_id AND upload_token = :token
RETURNING custom_id, app_url, uploaded_at;

-- name: forget_browserstack_app
UPDATE browserstack_apps SET app_url = NULL, uploaded_at = NULL, updated_at = now()
WHERE org_id = :org_id AND app_version_id = :app_version_id AND app_url = :app_url;
