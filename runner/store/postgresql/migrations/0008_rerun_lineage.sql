-- A re-run's original build (lineage on the pages and in the API); NULL for every other build.
ALTER TABLE builds ADD COLUMN rerun_of BIGINT;
CREATE INDEX IF NOT EXISTS builds_by_parent ON builds (parent_id);
CREATE INDEX IF NOT EXISTS builds_by_rerun_of ON builds (rerun_of);
