-- Which node ran a build (its lease owner when it was claimed), for its page and the API.
ALTER TABLE builds ADD COLUMN ran_on TEXT;
