-- API tokens (qualgent.server.queue.tokens). Only a token's SHA-256 is stored.

-- name: ensure_org
-- A submitter token names its org: one not known yet is made.
INSERT INTO orgs (id) VALUES (:org_id) ON CONFLICT DO NOTHING;

-- name: insert_token
INSERT INTO api_tokens (role, org_id, name, prefix, token_hash)
VALUES (:role, :org_id, :name, :prefix, :token_hash)
RETURNING id, role, org_id, name, prefix, created_at, revoked_at;

-- name: list_tokens
-- Each filter is optional (NULL: any); tokens are few, so one plan serves every combination.
SELECT id, role, org_id, name, prefix, created_at, revoked_at
FROM api_tokens
WHERE (CAST(:role AS text) IS NULL OR role = :role)
  AND (CAST(:org_id AS text) IS NULL OR org_id = :org_id)
  AND (:include_revoked OR revoked_at IS NULL)
ORDER BY created_at, id;

-- name: revoke_token
-- Idempotent: a revoked token keeps its first revocation time.
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = :token_id
RETURNING id, role, org_id, name, prefix, created_at, revoked_at;

-- name: find_token
-- Every authenticated request the token cache cannot vouch for: one indexed read, in autocommit.
SELECT id, role, org_id, token_hash FROM api_tokens WHERE token_hash = :token_hash AND revoked_at IS NULL;

-- name: token_live
SELECT 1 FROM api_tokens WHERE id = :token_id AND revoked_at IS NULL;
