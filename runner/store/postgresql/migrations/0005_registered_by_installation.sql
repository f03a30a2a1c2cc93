-- The GitHub App installation that registered a repository (auto_register); NULL: registered
-- through the API with a token.
ALTER TABLE repositories ADD COLUMN installation_id BIGINT;
