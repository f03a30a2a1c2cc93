-- What several nodes share beyond the queue (used by PostgreSQL's nodes; the embedded store
-- keeps logs and the session key as files in the data directory, which blue/green share).
-- Build logs as the node running the build ships them, in chunks from a byte offset.
CREATE TABLE IF NOT EXISTS log_chunks (
    build_id bigint NOT NULL,
    attempt  integer NOT NULL,
    start    bigint NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (build_id, start)
);
-- Secrets of the installation, made once by whichever node needs one first (the session key).
CREATE TABLE IF NOT EXISTS installation_secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
