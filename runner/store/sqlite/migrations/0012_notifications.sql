-- Notifications (a branch gone red or green, a failed deploy), written in the transaction that
-- ends the build and sent by one node (lease "notifications"), each channel once it succeeded.
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    build_id    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    next_at     REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    sent_to     TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (outcome, next_at);
