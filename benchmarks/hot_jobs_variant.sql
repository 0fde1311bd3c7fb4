-- A jobs table whose completion is a HOT update (docs/performance.md, "Measured and not adopted"), for
-- `python -m benchmarks.hot_path_cpu --variant benchmarks/hot_jobs_variant.sql`: no B-tree references status or
-- finished_at of jobs (BRIN is summarizing: PostgreSQL 16+ keeps an update HOT when only such indexes' columns
-- change), a group's jobs are read through a plain index, and pages leave room for the new row versions.
-- An experiment, not a migration: the running-jobs gauge, listings by status, the latest-finished report and
-- retention's oldest-first batches read these indexes and would need redoing first.
DROP INDEX ix_jobs_finished_at;
CREATE INDEX ix_jobs_finished_at ON jobs USING brin (finished_at);
DROP INDEX ix_attempts_finished_at;
CREATE INDEX ix_attempts_finished_at ON attempts USING brin (finished_at);
DROP INDEX ix_jobs_running_failed_cancelled;
DROP INDEX ix_jobs_active_by_group;
DROP INDEX ix_jobs_group_id;
CREATE INDEX ix_jobs_group_id ON jobs (group_id, priority, created_at);
ALTER TABLE jobs SET (fillfactor = 60);
