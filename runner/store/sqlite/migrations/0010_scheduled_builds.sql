-- Scheduled builds: which builds a schedule started, and each repository's schedule as last
-- seen (its expression, since when, and the slot built last), so a slot builds once.
ALTER TABLE builds ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS schedules (
    repository  TEXT PRIMARY KEY,
    expression  TEXT NOT NULL,
    since       REAL NOT NULL,
    built_slot  REAL
);
