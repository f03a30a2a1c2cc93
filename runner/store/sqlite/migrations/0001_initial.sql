-- Hobotnica's durable state. Every arrow that crosses a restart goes through these tables.
-- Several daemons may share the file (blue/green): work is claimed with leases that the owner
-- renews, so a daemon that dies leaves nothing stuck; the same protocol works on PostgreSQL.

CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,      -- X-GitHub-Delivery; redeliveries keep it
    event       TEXT NOT NULL,
    hook_id     TEXT,
    received_at REAL NOT NULL,
    outcome     TEXT NOT NULL          -- accepted, ignored: <reason>
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS builds (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id       TEXT,
    parent_id         INTEGER,          -- the test build a deploy follows
    repository        TEXT NOT NULL,
    job               TEXT NOT NULL,    -- test, deploy
    sha               TEXT NOT NULL,
    ref               TEXT NOT NULL,
    branch            TEXT NOT NULL,
    pull_request      INTEGER,
    from_fork         INTEGER NOT NULL DEFAULT 0,
    deploy_after_test INTEGER NOT NULL DEFAULT 0,
    message           TEXT NOT NULL DEFAULT '',
    author            TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL,    -- queued, running, success, failure, error
    description       TEXT NOT NULL DEFAULT '',
    exit_code         INTEGER,
    received_at       REAL NOT NULL,    -- when the webhook arrived
    queued_at         REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,             -- the daemon running it
    lease_expires     REAL,             -- renewed by the owner's heartbeat
    stop_reason       TEXT,             -- asks the owner to stop it (a newer push)
    not_before        REAL,             -- claimable from then on (a burst settling)
    pushed_at         REAL              -- push order from GitHub; NULL: arrival order
);
CREATE INDEX IF NOT EXISTS builds_by_state ON builds (state, repository, id);
CREATE INDEX IF NOT EXISTS builds_by_lane ON builds (repository, ref, job, state);
CREATE INDEX IF NOT EXISTS builds_by_repository ON builds (repository, id);  -- the pages' lists
CREATE INDEX IF NOT EXISTS builds_by_push ON builds (repository, ref, job, pushed_at);

CREATE TABLE IF NOT EXISTS outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    build_id          INTEGER NOT NULL,
    repository        TEXT NOT NULL,
    sha               TEXT NOT NULL,
    context           TEXT NOT NULL,
    state             TEXT NOT NULL,
    description       TEXT NOT NULL,
    created_at        REAL NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   REAL NOT NULL DEFAULT 0,
    done_at           REAL,
    outcome           TEXT              -- sending (in flight), then sent, collapsed, dropped,
                                        -- rejected or over-limit
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (done_at, next_attempt_at, build_id);
CREATE INDEX IF NOT EXISTS outbox_by_commit ON outbox (repository, sha, context, done_at);
CREATE INDEX IF NOT EXISTS outbox_by_build ON outbox (build_id, outcome);

-- Named leases for work only one daemon may do at a time (posting statuses serially).
CREATE TABLE IF NOT EXISTS leases (
    name    TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;

-- The GitHub hook each repository's deliveries came through, for catching up on missed ones.
CREATE TABLE IF NOT EXISTS hooks (
    repository      TEXT PRIMARY KEY,
    hook_id         TEXT NOT NULL,
    checked_until   REAL NOT NULL DEFAULT 0  -- deliveries before this were already reconciled
) WITHOUT ROWID;

-- Repositories registered through the REST API ([[projects]] of the config are not stored).
CREATE TABLE IF NOT EXISTS repositories (
    repository        TEXT PRIMARY KEY COLLATE NOCASE,  -- owner/name as GitHub spells it
    owner             TEXT NOT NULL COLLATE NOCASE,
    webhook_uid       TEXT NOT NULL UNIQUE,             -- its webhook: /webhooks/{uid}
    webhook_secret    TEXT NOT NULL,                    -- that webhook's own HMAC secret
    hook_id           TEXT,                             -- the GitHub hook Hobotnica created
    status            TEXT NOT NULL,                    -- cloning, ready, clone_failed, disabled
    status_reason     TEXT NOT NULL DEFAULT '',
    default_branch    TEXT NOT NULL DEFAULT '',
    deploy_branch     TEXT,                             -- NULL: the default branch
    deploy_enabled    INTEGER NOT NULL DEFAULT 1,
    timeout           INTEGER,                          -- seconds per target; NULL: builds.timeout
    registered_by     TEXT NOT NULL,                    -- GitHub login
    token             TEXT,                             -- registrant's token: clone, statuses, checks
    created_at        REAL NOT NULL,
    access_checked_at REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Build variables of registered repositories: `scope` is an owner (shared by all its
-- repositories) or owner/name (overrides the owner's). Secrets are write-only through the API.
CREATE TABLE IF NOT EXISTS variables (
    scope   TEXT NOT NULL COLLATE NOCASE,
    secret  INTEGER NOT NULL,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (scope, secret, name)
) WITHOUT ROWID;

-- The token of a registration just removed, for a while: the final statuses of the builds its
-- removal stopped still go out with it, from whichever daemon posts them.
CREATE TABLE IF NOT EXISTS retired_tokens (
    repository TEXT PRIMARY KEY COLLATE NOCASE,
    token      TEXT NOT NULL,
    until      REAL NOT NULL
) WITHOUT ROWID;
