-- The database refuses what the scheduler must never do: two running builds of a repository.
CREATE UNIQUE INDEX IF NOT EXISTS one_running_build ON builds (lower(repository)) WHERE state = 'running';
