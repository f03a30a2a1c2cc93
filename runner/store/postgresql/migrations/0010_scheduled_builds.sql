-- Scheduled builds: which builds a schedule started, and each repository's schedule as last
-- seen (its expression, since when, and the slot built last), so a slot builds once.
ALTER TABLE builds ADD COLUMN scheduled integer NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS schedules (
    repository  text PRIMARY KEY,
    expression  text NOT NULL,
    since       double precision NOT NULL,
    built_slot  double precision
);
