-- The builds page across repositories filters by branch, state, job or who pushed, newest first:
-- an index per filter, ending with the id, so a page of a rare value reads a page of entries.
CREATE INDEX IF NOT EXISTS builds_by_branch ON builds (branch, id);
CREATE INDEX IF NOT EXISTS builds_by_state_and_id ON builds (state, id);
CREATE INDEX IF NOT EXISTS builds_by_job ON builds (job, id);
CREATE INDEX IF NOT EXISTS builds_by_author ON builds (author, id);
