"""scheduling that uses what it knows: capacity caps, bounded starvation, fair share, build affinity

    targets (target, max_running)        a cap on the groups running at once on a target (no row, or NULL: none)
    orgs.max_running                     the same per org
    orgs.last_claimed_at                 when a group of the org was last claimed: fair share
    ix_job_groups_running_target/_org    running groups by target / org: the caps' counts read a few index entries
    ix_job_groups_aging                  pending groups by age: the groups past the aging bound, oldest first
    test_durations                       per (org, target, test path): finished runs, a moving mean of their
                                         duration (the last ~10 weigh most), when it last failed; upserted once
                                         per finished group (qualgent.queue.history), never per job row
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
meets a foreign-key check, a tier change or a submission.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from qualgent.db.migrate import revision_module

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The advisory lock class of the caps (the first key of pg_advisory_xact_lock(int, int)): 'qgcp'.
CAP_LOCK_CLASS = 0x71676370

# enable_sort stays off (migration 0009): every statement walks an index in the order it wants; the only sort
# left is the fair-share pick over at most 16 rows. That sort costs the planner's penalty for a disabled node
# (1e10), which is far past jit_above_cost: without jit = off, PostgreSQL compiled the statement on every claim
# (~0.45 s each, seen through auto_explain). Generic plans, always: the disabled sort's cost also kept PL/pgSQL from
# ever preferring its cached generic plans, so each call planned its dozen statements anew (a claim took 5.5-6.8 ms
# against 2.6-4.6 ms for migration 0009's, on a loaded machine; the same as 0009's with generic plans). The plans
# do not depend on the arguments: every statement reads its index in order or by key.
CLAIM = """
CREATE FUNCTION qualgent_claim(p_agent_id uuid, p_targets text[], p_lease_seconds double precision,
                               p_aging_seconds double precision DEFAULT 600, p_held jsonb DEFAULT '[]',
                               p_min_chunk_seconds double precision DEFAULT 120)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    agent_status text;
    chosen uuid;
    chosen_target text;
    chosen_org text;
    claimed record;
    pick uuid;
    cap integer;
    full_targets text[] := '{}';   -- capped and at their cap: skipped for the rest of this claim
    full_orgs text[] := '{}';
    tries integer := 0;
    job_list jsonb;
    deferred jsonb;
    split jsonb;
    unknown bigint;
    median_ms double precision;
    total_ms double precision;
    idle integer := 0;
    share_ms double precision := 'Infinity';
BEGIN
    SELECT status INTO agent_status FROM agents WHERE id = p_agent_id;
    IF agent_status IS NULL THEN
        RETURN jsonb_build_object('agent_status', NULL);  -- unknown
    END IF;
    IF agent_status = 'offline' THEN  -- set offline by an operator, or deregistered: a sign of life, no work
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- Each turn locks one candidate (FOR NO KEY UPDATE SKIP LOCKED: claims run side by side) and keeps it when no
    -- cap stops it; a cap that stops it adds its key to the skipped ones, so the turns are bounded by the caps met.
    LOOP
        tries := tries + 1;
        EXIT WHEN tries > 16;
        chosen := NULL;
        pick := NULL;
        -- 1. Bounded starvation: a group waiting longer than the bound goes first, the oldest first.
        WITH aged AS (
            SELECT id, target, org_id
            FROM job_groups
            WHERE status = 'pending' AND oldest_job_at <= now() - make_interval(secs => p_aging_seconds)
              AND target = ANY(p_targets) AND available_at <= now()
              AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
            ORDER BY oldest_job_at, id
            LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT id, target, org_id INTO chosen, chosen_target, chosen_org FROM aged;
        IF chosen IS NULL THEN
            -- 2. The best (tier, priority) among the first groups in scheduling order; within it a build the agent
            -- holds, else the org served least recently, else the oldest (the index order).
            WITH head AS MATERIALIZED (
                SELECT id, org_id, app_version_id, target, tier, best_priority, oldest_job_at
                FROM job_groups
                WHERE status = 'pending' AND target = ANY(p_targets) AND available_at <= now()
                  AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
                ORDER BY tier, best_priority, oldest_job_at, id
                LIMIT 16
            ), best_tier AS (
                SELECT min(tier) AS tier FROM head
            ), bracket AS (
                SELECT t.tier, min(h.best_priority) AS best_priority
                FROM best_tier t JOIN head h ON h.tier = t.tier
                GROUP BY t.tier
            ), held AS (
                -- Each held build's pending group by its key (at most one: uq_job_groups_pending_key); the
                -- LIMIT keeps the lookup a per-build index probe, whatever the planner thinks of the join.
                SELECT g.id
                FROM jsonb_to_recordset(p_held) AS b (target text, org_id text, app_version_id text)
                CROSS JOIN LATERAL (
                    SELECT p.id, p.tier, p.best_priority, p.target, p.org_id, p.available_at
                    FROM job_groups p
                    WHERE p.org_id = b.org_id AND p.app_version_id = b.app_version_id AND p.target = b.target
                      AND p.status = 'pending'
                    LIMIT 1
                ) g
                JOIN bracket k ON g.tier = k.tier AND g.best_priority = k.best_priority
                WHERE g.target = ANY(p_targets) AND g.available_at <= now()
                  AND g.target <> ALL(full_targets) AND g.org_id <> ALL(full_orgs)
                LIMIT 1
            ), fair AS (
                SELECT h.id
                FROM head h
                JOIN bracket k ON h.tier = k.tier AND h.best_priority = k.best_priority
                -- at most 16 rows: each org's stamp looked up by its key, never a scan of every org
                ORDER BY (SELECT o.last_claimed_at FROM orgs o WHERE o.id = h.org_id) NULLS FIRST, h.oldest_job_at, h.id
                LIMIT 1
            )
            SELECT COALESCE((SELECT id FROM held), (SELECT id FROM fair)) INTO pick;
            IF pick IS NULL THEN
                EXIT;  -- nothing this agent may run
            END IF;
            SELECT id, target, org_id INTO chosen, chosen_target, chosen_org
            FROM job_groups
            WHERE id = pick AND status = 'pending'
            FOR NO KEY UPDATE SKIP LOCKED;
            IF chosen IS NULL THEN
                -- Another claim took the pick first: the next group no one else is taking, in scheduling order.
                -- The CTE is a fence: LIMIT 1 cannot become "every match".
                WITH candidate AS (
                    SELECT id, target, org_id
                    FROM job_groups
                    WHERE status = 'pending' AND target = ANY(p_targets) AND available_at <= now()
                      AND target <> ALL(full_targets) AND org_id <> ALL(full_orgs)
                    ORDER BY tier, best_priority, oldest_job_at, id
                    LIMIT 1
                    FOR NO KEY UPDATE SKIP LOCKED
                )
                SELECT id, target, org_id INTO chosen, chosen_target, chosen_org FROM candidate;
                EXIT WHEN chosen IS NULL;
            END IF;
        END IF;
        -- 3. Caps, counted under the key's advisory lock (held to the end of this transaction): a claim that waited
        -- for it counts, in its next statement's snapshot, the group the one before it committed.
        SELECT max_running INTO cap FROM targets WHERE target = chosen_target;
        IF cap IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(%(lock_class)s, hashtext('target:' || chosen_target));
            IF (SELECT count(*) FROM job_groups WHERE status = 'running' AND target = chosen_target) >= cap THEN
                full_targets := full_targets || chosen_target;
                chosen := NULL;
                CONTINUE;
            END IF;
        END IF;
        SELECT max_running INTO cap FROM orgs WHERE id = chosen_org;
        IF cap IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(%(lock_class)s, hashtext('org:' || chosen_org));
            IF (SELECT count(*) FROM job_groups WHERE status = 'running' AND org_id = chosen_org) >= cap THEN
                full_orgs := full_orgs || chosen_org;
                chosen := NULL;
                CONTINUE;
            END IF;
        END IF;
        EXIT;
    END LOOP;
    IF chosen IS NOT NULL THEN
        UPDATE job_groups g
        SET status = 'running', agent_id = p_agent_id, lease_token = gen_random_uuid(),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds), claimed_at = now()
        WHERE g.id = chosen
        RETURNING g.id, g.org_id, g.app_version_id, g.target, g.lease_token, g.lease_expires_at INTO claimed;
    END IF;
    IF chosen IS NULL THEN
        UPDATE agents SET last_heartbeat_at = now() WHERE id = p_agent_id;
        RETURN jsonb_build_object('agent_status', agent_status);
    END IF;
    -- Fair share's clock. A claim of the same org in flight holds the row and stamps it as well: skip it rather
    -- than wait for its commit (an org's concurrent claims never queue on its row).
    UPDATE orgs SET last_claimed_at = now()
    WHERE id = (SELECT id FROM orgs WHERE id = claimed.org_id FOR NO KEY UPDATE SKIP LOCKED);
    -- Expected work of the runnable jobs (history; a test without any counts the org's median, 30 s without one).
    SELECT count(*) FILTER (WHERE d.test_path IS NULL), sum(d.mean_ms) INTO unknown, total_ms
    FROM jobs j
    LEFT JOIN test_durations d
      ON d.org_id = claimed.org_id AND d.target = claimed.target AND d.test_path = j.test_path
    WHERE j.group_id = claimed.id AND j.status = 'pending' AND j.run_after <= now();
    IF unknown > 0 THEN
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.mean_ms) INTO median_ms
        FROM test_durations d WHERE d.org_id = claimed.org_id AND d.target = claimed.target;
    END IF;
    median_ms := COALESCE(median_ms, 30000);
    total_ms := COALESCE(total_ms, 0) + unknown * median_ms;
    -- Splitting: with other agents of the target idle and at least two chunks of work, keep a fair share (never
    -- less than a chunk); the rest goes back to the key's pending group for them (the caller moves it, as it
    -- moves jobs still in backoff).
    IF total_ms >= 2 * p_min_chunk_seconds * 1000 THEN
        SELECT count(*) INTO idle
        FROM agents a
        WHERE a.status = 'idle' AND a.id <> p_agent_id AND claimed.target = ANY(a.targets)
          AND a.last_heartbeat_at > now() - make_interval(secs => 3 * p_lease_seconds);
        IF idle > 0 THEN
            share_ms := greatest(p_min_chunk_seconds * 1000, total_ms / (idle + 1));
        END IF;
    END IF;
    -- Run order: priority, then tests that failed in the last day, then the longest expected, then age; runnable by
    -- the database's clock, the clock the claim chose the group by. A job is kept while the work before it in
    -- that order is under the share (so the first always is).
    WITH est AS (
        SELECT j.id, j.test_path, j.priority, j.attempts, j.max_attempts, j.timeout_seconds, j.created_at,
               j.run_after <= now() AS runnable, COALESCE(d.mean_ms, median_ms) AS est_ms,
               COALESCE(d.last_failed_at > now() - interval '1 day', false) AS failed_recently
        FROM jobs j
        LEFT JOIN test_durations d
          ON d.org_id = claimed.org_id AND d.target = claimed.target AND d.test_path = j.test_path
        WHERE j.group_id = claimed.id AND j.status = 'pending'
    ), ordered AS (
        SELECT est.*,
               sum(est_ms) OVER (PARTITION BY runnable ORDER BY priority, failed_recently DESC, est_ms DESC,
                                 created_at, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_ms,
               row_number() OVER (PARTITION BY runnable ORDER BY priority, failed_recently DESC, est_ms DESC,
                                  created_at, id) AS n
        FROM est
    )
    SELECT jsonb_agg(jsonb_build_object(
               'id', o.id, 'test_path', o.test_path, 'priority', o.priority, 'attempts', o.attempts,
               'max_attempts', o.max_attempts, 'timeout_seconds', o.timeout_seconds)
               ORDER BY o.n) FILTER (WHERE o.runnable AND COALESCE(o.before_ms, 0) < share_ms),
           jsonb_agg(o.id) FILTER (WHERE o.runnable AND COALESCE(o.before_ms, 0) >= share_ms),
           jsonb_agg(o.id) FILTER (WHERE NOT o.runnable)
    INTO job_list, split, deferred
    FROM ordered o;
    -- The agent's sign of life, and busy when it has jobs to run: one row version per claim.
    UPDATE agents
    SET last_heartbeat_at = now(), status = CASE WHEN job_list IS NULL THEN status ELSE 'busy' END
    WHERE id = p_agent_id;
    RETURN jsonb_build_object(
        'agent_status', agent_status,
        'group', jsonb_build_object(
            'id', claimed.id, 'org_id', claimed.org_id, 'app_version_id', claimed.app_version_id,
            'target', claimed.target, 'token', claimed.lease_token, 'lease_expires_at', claimed.lease_expires_at),
        'jobs', COALESCE(job_list, '[]'::jsonb),
        'deferred', COALESCE(deferred, '[]'::jsonb),
        'split', COALESCE(split, '[]'::jsonb));
END
$$
""" % {"lock_class": CAP_LOCK_CLASS}  # noqa: UP031 - the SQL holds no other % sign

OLD_SIGNATURE = "qualgent_claim(uuid, text[], double precision)"
NEW_SIGNATURE = "qualgent_claim(uuid, text[], double precision, double precision, jsonb, double precision)"


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
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(CLAIM)


def downgrade() -> None:
    before = revision_module("20261129_0009_hot_path_functions.py")
    op.execute(f"DROP FUNCTION {NEW_SIGNATURE}")
    op.execute(before.CLAIM)
    op.drop_index("ix_job_groups_aging", table_name="job_groups")
    op.drop_index("ix_job_groups_running_org", table_name="job_groups")
    op.drop_index("ix_job_groups_running_target", table_name="job_groups")
    op.drop_constraint(op.f("ck_orgs_max_running"), "orgs", type_="check")
    op.drop_column("orgs", "last_claimed_at")
    op.drop_column("orgs", "max_running")
    op.drop_table("targets")
    op.drop_table("build_installs")
    op.drop_table("test_durations")
