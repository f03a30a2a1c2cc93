-- A fork's pull request under pull_requests.forks = "approve": 'waiting' until a person approves it,
-- then 'approved by LOGIN'; NULL for every other build.
ALTER TABLE builds ADD COLUMN approval TEXT;
