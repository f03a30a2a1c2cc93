-- A registered repository's own notification settings (PATCH .../{owner}/{name} `notify`), as
-- JSON: the keys of a configured project's `notify`. Secrets inside: never shown by the API.
ALTER TABLE repositories ADD COLUMN notify TEXT NOT NULL DEFAULT '';
