-- The tables, types, indexes and constraints of revision 0012, the baseline: pg_dump --schema-only of a database
-- the migrations 0001-0012 made, without the functions, triggers and views (qualgent/server/db/schema.sql holds those).
-- Applied by 20261129_0012_baseline.py; later migrations change it.

-- schema reporting
CREATE SCHEMA reporting;

-- comment SCHEMA reporting
COMMENT ON SCHEMA reporting IS 'qualgent reporting views for analysts: docs/reporting.md';

-- type job_priority
CREATE TYPE job_priority AS ENUM (
    'high',
    'medium',
    'low'
);

-- type org_tier
CREATE TYPE org_tier AS ENUM (
    'premium',
    'enterprise',
    'standard'
);

-- table jobs
CREATE TABLE jobs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    target text NOT NULL,
    test_path text NOT NULL,
    priority job_priority NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    group_id uuid NOT NULL,
    agent_id uuid,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    run_after timestamp with time zone DEFAULT now() NOT NULL,
    exit_code integer,
    duration_ms bigint,
    output_tail text,
    error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    test_retries integer DEFAULT 0 NOT NULL,
    timeout_seconds integer,
    flaky boolean DEFAULT false NOT NULL,
    attempt_budget integer DEFAULT 3 NOT NULL,
    CONSTRAINT ck_jobs_attempts CHECK (((attempts >= 0) AND (max_attempts >= 1))),
    CONSTRAINT ck_jobs_retry_settings CHECK (((test_retries >= 0) AND (attempt_budget >= 1) AND ((timeout_seconds IS NULL) OR (timeout_seconds > 0)))),
    CONSTRAINT ck_jobs_status CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT ck_jobs_target CHECK ((target = ANY (ARRAY['emulator'::text, 'device'::text, 'browserstack'::text])))
)
WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02', autovacuum_vacuum_insert_scale_factor='0.05');

-- table agents
CREATE TABLE agents (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    targets text[] NOT NULL,
    status text DEFAULT 'idle'::text NOT NULL,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    last_heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_agents_status CHECK ((status = ANY (ARRAY['idle'::text, 'busy'::text, 'offline'::text])))
)
WITH (fillfactor='50');

-- table api_tokens
CREATE TABLE api_tokens (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    role text NOT NULL,
    org_id text,
    name text,
    prefix text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    CONSTRAINT ck_api_tokens_org_for_submitters CHECK (((role = 'submitter'::text) = (org_id IS NOT NULL))),
    CONSTRAINT ck_api_tokens_role CHECK ((role = ANY (ARRAY['submitter'::text, 'agent'::text])))
);

-- table attempts
CREATE TABLE attempts (
    job_id uuid NOT NULL,
    number integer NOT NULL,
    agent_id uuid NOT NULL,
    group_id uuid NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    outcome text,
    exit_code integer,
    duration_ms bigint,
    error text,
    CONSTRAINT ck_attempts_outcome CHECK (((outcome IS NULL) OR (outcome = ANY (ARRAY['passed'::text, 'test_failed'::text, 'infra_error'::text, 'cancelled'::text]))))
)
WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02', autovacuum_vacuum_insert_scale_factor='0.05');

-- table job_groups
CREATE TABLE job_groups (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    target text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    tier org_tier NOT NULL,
    best_priority job_priority NOT NULL,
    oldest_job_at timestamp with time zone NOT NULL,
    available_at timestamp with time zone NOT NULL,
    job_count integer DEFAULT 0 NOT NULL,
    agent_id uuid,
    lease_token uuid,
    lease_expires_at timestamp with time zone,
    claimed_at timestamp with time zone,
    finished_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ck_job_groups_status CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'done'::text]))),
    CONSTRAINT ck_job_groups_target CHECK ((target = ANY (ARRAY['emulator'::text, 'device'::text, 'browserstack'::text])))
)
WITH (fillfactor='70', autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02');

-- table orgs
CREATE TABLE orgs (
    id text NOT NULL,
    tier org_tier DEFAULT 'standard'::org_tier NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

-- table submissions
CREATE TABLE submissions (
    idempotency_key text NOT NULL,
    request_hash text NOT NULL,
    job_ids uuid[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

-- table daily_installs
CREATE TABLE reporting.daily_installs (
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    day date NOT NULL,
    installs bigint NOT NULL,
    install_seconds double precision NOT NULL,
    test_seconds double precision NOT NULL
);

-- comment TABLE daily_installs
COMMENT ON TABLE reporting.daily_installs IS 'Pruned groups that ran, by org, app version and UTC day of the claim: installs, install and test seconds.';

-- table daily_job_stats
CREATE TABLE reporting.daily_job_stats (
    org_id text NOT NULL,
    app_version_id text NOT NULL,
    test_path text NOT NULL,
    target text NOT NULL,
    day date NOT NULL,
    finished bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    cancelled bigint NOT NULL,
    flaky bigint NOT NULL,
    attempts bigint NOT NULL,
    durations bigint NOT NULL,
    duration_seconds double precision NOT NULL,
    queue_waits bigint NOT NULL,
    queue_wait_seconds double precision NOT NULL,
    first_submitted_at timestamp with time zone NOT NULL,
    last_finished_at timestamp with time zone NOT NULL,
    test_runs bigint DEFAULT 0 NOT NULL,
    test_failures bigint DEFAULT 0 NOT NULL,
    passes_after_failure bigint DEFAULT 0 NOT NULL,
    last_failure_at timestamp with time zone
);

-- comment TABLE daily_job_stats
COMMENT ON TABLE reporting.daily_job_stats IS 'Pruned finished jobs, by org, app version, test path, target and UTC day of finish: counts by final status, flaky, attempts, duration and queue wait sums (seconds) and counts; their test verdicts (attempts passed or test_failed): runs, failures, passes right after a failure, last failure.';

-- table daily_latency
CREATE TABLE reporting.daily_latency (
    org_id text NOT NULL,
    metric text NOT NULL,
    day date NOT NULL,
    bucket integer NOT NULL,
    jobs bigint NOT NULL,
    CONSTRAINT ck_daily_latency_metric CHECK ((metric = ANY (ARRAY['duration'::text, 'queue_wait'::text])))
);

-- comment TABLE daily_latency
COMMENT ON TABLE reporting.daily_latency IS 'Pruned finished jobs per org, metric (duration | queue_wait) and UTC day: how many fell in each log bucket (reporting.bucket_value gives its bounds); the median and p95 of windows with pruned days.';

-- table group_attempts_pruned
CREATE TABLE reporting.group_attempts_pruned (
    group_id uuid NOT NULL,
    first_started_at timestamp with time zone NOT NULL,
    test_ms bigint
);

-- comment TABLE group_attempts_pruned
COMMENT ON TABLE reporting.group_attempts_pruned IS 'Attempts pruned with their jobs from a group that is still live: its earliest start and their run time, until the group is pruned too.';

-- table test_run_tails
CREATE TABLE reporting.test_run_tails (
    org_id text NOT NULL,
    test_path text NOT NULL,
    app_version_id text NOT NULL,
    target text NOT NULL,
    last_outcome text NOT NULL,
    last_finished_at timestamp with time zone NOT NULL
);

-- comment TABLE test_run_tails
COMMENT ON TABLE reporting.test_run_tails IS 'The last pruned verdict of each org, test path, app version and target, when it was a failure: the previous run of the first verdict still live.';

-- constraint agents pk_agents
ALTER TABLE ONLY agents
    ADD CONSTRAINT pk_agents PRIMARY KEY (id);

-- constraint api_tokens pk_api_tokens
ALTER TABLE ONLY api_tokens
    ADD CONSTRAINT pk_api_tokens PRIMARY KEY (id);

-- constraint attempts pk_attempts
ALTER TABLE ONLY attempts
    ADD CONSTRAINT pk_attempts PRIMARY KEY (job_id, number);

-- constraint job_groups pk_job_groups
ALTER TABLE ONLY job_groups
    ADD CONSTRAINT pk_job_groups PRIMARY KEY (id);

-- constraint jobs pk_jobs
ALTER TABLE ONLY jobs
    ADD CONSTRAINT pk_jobs PRIMARY KEY (id);

-- constraint orgs pk_orgs
ALTER TABLE ONLY orgs
    ADD CONSTRAINT pk_orgs PRIMARY KEY (id);

-- constraint submissions pk_submissions
ALTER TABLE ONLY submissions
    ADD CONSTRAINT pk_submissions PRIMARY KEY (idempotency_key);

-- constraint api_tokens uq_api_tokens_token_hash
ALTER TABLE ONLY api_tokens
    ADD CONSTRAINT uq_api_tokens_token_hash UNIQUE (token_hash);

-- constraint daily_installs pk_daily_installs
ALTER TABLE ONLY reporting.daily_installs
    ADD CONSTRAINT pk_daily_installs PRIMARY KEY (org_id, app_version_id, day);

-- constraint daily_job_stats pk_daily_job_stats
ALTER TABLE ONLY reporting.daily_job_stats
    ADD CONSTRAINT pk_daily_job_stats PRIMARY KEY (org_id, app_version_id, test_path, target, day);

-- constraint daily_latency pk_daily_latency
ALTER TABLE ONLY reporting.daily_latency
    ADD CONSTRAINT pk_daily_latency PRIMARY KEY (org_id, metric, day, bucket);

-- constraint group_attempts_pruned pk_group_attempts_pruned
ALTER TABLE ONLY reporting.group_attempts_pruned
    ADD CONSTRAINT pk_group_attempts_pruned PRIMARY KEY (group_id);

-- constraint test_run_tails pk_test_run_tails
ALTER TABLE ONLY reporting.test_run_tails
    ADD CONSTRAINT pk_test_run_tails PRIMARY KEY (org_id, test_path, app_version_id, target);

-- index ix_attempts_finished_at
CREATE INDEX ix_attempts_finished_at ON attempts USING btree (finished_at) WHERE (outcome = ANY (ARRAY['passed'::text, 'test_failed'::text]));

-- index ix_attempts_group_id
CREATE INDEX ix_attempts_group_id ON attempts USING btree (group_id);

-- index ix_job_groups_claimable
CREATE INDEX ix_job_groups_claimable ON job_groups USING btree (tier, best_priority, oldest_job_at, id) WHERE (status = 'pending'::text);

-- index ix_job_groups_finished_at
CREATE INDEX ix_job_groups_finished_at ON job_groups USING btree (finished_at) WHERE (status = 'done'::text);

-- index ix_job_groups_running
CREATE INDEX ix_job_groups_running ON job_groups USING btree (agent_id) WHERE (status = 'running'::text);

-- index ix_jobs_active_by_group
CREATE INDEX ix_jobs_active_by_group ON jobs USING btree (group_id, priority, created_at) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]));

-- index ix_jobs_finished_at
CREATE INDEX ix_jobs_finished_at ON jobs USING btree (finished_at) WHERE (status = ANY (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text]));

-- index ix_jobs_group_id
CREATE INDEX ix_jobs_group_id ON jobs USING btree (group_id);

-- index ix_jobs_org_id_created_at
CREATE INDEX ix_jobs_org_id_created_at ON jobs USING btree (org_id, created_at);

-- index ix_jobs_running_failed_cancelled
CREATE INDEX ix_jobs_running_failed_cancelled ON jobs USING btree (status, created_at) WHERE (status = ANY (ARRAY['running'::text, 'failed'::text, 'cancelled'::text]));

-- index ix_submissions_created_at
CREATE INDEX ix_submissions_created_at ON submissions USING btree (created_at);

-- index uq_job_groups_pending_key
CREATE UNIQUE INDEX uq_job_groups_pending_key ON job_groups USING btree (org_id, app_version_id, target) WHERE (status = 'pending'::text);

-- fk constraint api_tokens fk_api_tokens_org_id_orgs
ALTER TABLE ONLY api_tokens
    ADD CONSTRAINT fk_api_tokens_org_id_orgs FOREIGN KEY (org_id) REFERENCES orgs(id);

-- fk constraint job_groups fk_job_groups_agent_id_agents
ALTER TABLE ONLY job_groups
    ADD CONSTRAINT fk_job_groups_agent_id_agents FOREIGN KEY (agent_id) REFERENCES agents(id);

-- fk constraint job_groups fk_job_groups_org_id_orgs
ALTER TABLE ONLY job_groups
    ADD CONSTRAINT fk_job_groups_org_id_orgs FOREIGN KEY (org_id) REFERENCES orgs(id);

-- fk constraint jobs fk_jobs_group_id_job_groups
ALTER TABLE ONLY jobs
    ADD CONSTRAINT fk_jobs_group_id_job_groups FOREIGN KEY (group_id) REFERENCES job_groups(id);

-- fk constraint jobs fk_jobs_org_id_orgs
ALTER TABLE ONLY jobs
    ADD CONSTRAINT fk_jobs_org_id_orgs FOREIGN KEY (org_id) REFERENCES orgs(id);


--
