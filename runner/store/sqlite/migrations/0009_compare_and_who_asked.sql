-- The head a push moved its branch from (the compare view of the push's changes), and who
-- started a build by hand (the API, a re-run); '' when there is none.
ALTER TABLE builds ADD COLUMN before_sha TEXT NOT NULL DEFAULT '';
ALTER TABLE builds ADD COLUMN asked_by TEXT NOT NULL DEFAULT '';
