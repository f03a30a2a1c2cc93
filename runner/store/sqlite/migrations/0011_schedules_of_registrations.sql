-- A registered repository's schedule (PATCH /api/repositories/{owner}/{name}), as a configured
-- project's `schedule`, `schedule_timezone` and `schedule_branch`.
ALTER TABLE repositories ADD COLUMN schedule TEXT;
ALTER TABLE repositories ADD COLUMN schedule_timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE repositories ADD COLUMN schedule_branch TEXT;
