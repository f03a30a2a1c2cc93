"""Notifications (`Notifications`): queued in the transaction that ends a build, as the rules
say (`rules.notification_for`), and sent channel by channel by one node at a time."""

from runner.core.models import BuildState
from runner.scheduling import rules
from runner.store.records import NotificationItem
from runner.store.sql.connection import Connection, Row
from runner.store.sql.rows import request_of

# The lane's last end that says something about the branch: not one that was stopped.
_NOT_STOPPED = " AND ".join(
    f"description NOT LIKE '{prefix}%'" for prefix in rules.STOPPED_PREFIXES
)
_PREVIOUS = (
    "SELECT state FROM builds WHERE repository = ? AND ref = ? AND job = ? AND id <> ?"  # noqa: S608
    f" AND state IN ('success', 'failure', 'error') AND {_NOT_STOPPED}"
    " ORDER BY finished_at DESC, id DESC LIMIT 1"
)
# A re-run speaks for the branch only when it re-ran the branch's newest commit.
_NEWEST = (
    "SELECT sha FROM builds WHERE repository = ? AND ref = ? AND job = ? AND rerun_of IS NULL"
    " ORDER BY id DESC LIMIT 1"
)


def enqueue_if_told(db: Connection, row: Row, state: BuildState, description: str) -> None:
    """Inside `finish`: queue the notification the build's end makes, if it makes one."""
    lane = (row["repository"], row["ref"], row["job"])
    if row["rerun_of"] is not None:
        newest = db.execute(_NEWEST, lane).fetchone()
        if newest is not None and newest["sha"] != row["sha"]:
            return
    found = db.execute(_PREVIOUS, (*lane, row["id"])).fetchone()
    previous = None if found is None else BuildState(found["state"])
    kind = rules.notification_for(request_of(row), state, description, previous)
    if kind is not None:
        now = db.now()
        db.execute(
            "INSERT INTO notifications (build_id, kind, created_at, next_at) VALUES (?, ?, ?, ?)",
            (row["id"], kind, now, now),
        )


def next_due(db: Connection, now: float) -> tuple[NotificationItem | None, float | None]:
    """The oldest notification due now, or None and when the next one is due."""
    found = db.execute(
        "SELECT * FROM notifications WHERE outcome = 'pending' ORDER BY next_at, id LIMIT 1"
    ).fetchone()
    if found is None:
        return None, None
    if found["next_at"] > now:
        return None, float(found["next_at"])
    sent_to = tuple(channel for channel in found["sent_to"].split(",") if channel)
    return (
        NotificationItem(found["id"], found["build_id"], found["kind"], found["attempts"], sent_to),
        None,
    )


def sent(db: Connection, notification_id: int, channel: str) -> None:
    """`channel` has it: never sent there again."""
    db.execute(
        "UPDATE notifications SET sent_to = sent_to || ? WHERE id = ?",
        (f"{channel},", notification_id),
    )


def settle(db: Connection, notification_id: int, retry_at: float | None) -> None:
    """Done with it (every channel has it, or gave up), or try the rest again at `retry_at`."""
    if retry_at is None:
        db.execute("UPDATE notifications SET outcome = 'done' WHERE id = ?", (notification_id,))
    else:
        db.execute(
            "UPDATE notifications SET next_at = ?, attempts = attempts + 1 WHERE id = ?",
            (retry_at, notification_id),
        )
