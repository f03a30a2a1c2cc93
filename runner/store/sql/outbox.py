"""The status outbox in SQL: what to post next, and what never needs posting.

Functions over an open connection, called inside the store's transactions. The policy is the
store's, the same on every backend (`runner.store.interface`):

- For one commit and context only the newest waiting state is worth sending; older ones end
  `collapsed` — but not another build's final state (a check run is per build).
- A superseded build that GitHub never heard of ends silently (`dropped`, decided at once by
  `forget_unannounced`), and only its own states go with it: another build of the same commit
  still reports. A state being posted is marked `sending` first, so a post in flight counts as
  heard of, and no commit can be left showing `pending`.
- The newest builds' statuses go first, so under a burst of pushes the commits people look at are
  reported first and older ones are often superseded before they cost a request.
- GitHub keeps at most 1000 statuses per commit and context; past 990 only final states are sent,
  and past 1000 nothing.
- A `pending` state waits `PENDING_HOLD` seconds before it is due. A build that finishes, or is
  superseded, within that time costs one request or none, instead of three; under a burst of
  pushes this is most of the savings. Final states are due at once.
"""

from collections.abc import Iterable

from runner.core.models import BuildRequest
from runner.core.statuses import Status, StatusState
from runner.store.interface import FINAL_ONLY_AFTER, GITHUB_STATUS_LIMIT, PENDING_HOLD
from runner.store.records import OutboxItem
from runner.store.sql.connection import Connection, Row

ENQUEUE = (
    "INSERT INTO outbox (build_id, repository, sha, context, state, description,"
    " created_at, next_attempt_at, done_at, outcome) VALUES (?,?,?,?,?,?,?,?,?,?)"
)


def enqueue(db: Connection, build_id: int, request: BuildRequest, status: Status) -> None:
    # As a write that answers nothing: on PostgreSQL it goes with the next statement.
    db.executemany(ENQUEUE, [item_values(build_id, request, status, db.now())])


def item_values(
    build_id: int, request: BuildRequest, status: Status, now: float, *, dropped: bool = False
) -> tuple[object, ...]:
    """`ENQUEUE`'s parameters: a status to post, or (`dropped`) one its build's end made
    pointless before anyone could post it."""
    due = now + PENDING_HOLD if status.state is StatusState.PENDING else 0.0
    return (
        build_id,
        request.repository,
        request.sha,
        request.job.context,
        status.state.value,
        status.description,
        now,
        due,
        now if dropped else None,
        "dropped" if dropped else None,
    )


def next_item(db: Connection, now: float) -> tuple[OutboxItem | None, float | None]:
    """The next status to post, or None and when to look again (None: when woken)."""
    while True:
        row = db.execute(
            "SELECT * FROM outbox WHERE done_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY build_id DESC, id LIMIT 1",
            (now,),
        ).fetchone()
        if row is None:
            later = db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE done_at IS NULL"
            ).fetchone()[0]
            return None, None if later is None else float(later)
        # Whether GitHub heard of a build is decided under its repository's lock (a delivery
        # superseding it, a claim, a cancel); marking a state `sending` takes that lock too, and
        # reads the states again under it. Without it, on a store whose transactions run side
        # by side (PostgreSQL), a delivery could find the build unheard of and drop its states
        # while this hands one of them out: GitHub would show that `pending` for ever.
        db.lock(row["repository"].lower())
        # The newest state that is due. A newer one still held (perhaps another build's
        # pending) is posted when due, or dropped: collapsing this one under it could leave
        # the commit showing an old `pending` for ever.
        newest = db.execute(
            "SELECT * FROM outbox WHERE done_at IS NULL AND repository = ? AND sha = ?"
            " AND context = ? AND next_attempt_at <= ? ORDER BY id DESC LIMIT 1",
            (row["repository"], row["sha"], row["context"], now),
        ).fetchone()
        if newest is None:  # dropped meanwhile, by the transaction that held the lock
            continue
        _close_older(db, now, newest)
        sent = _sent_count(db, newest)
        if sent >= GITHUB_STATUS_LIMIT or (
            sent >= FINAL_ONLY_AFTER and newest["state"] == StatusState.PENDING
        ):
            _close(db, now, newest["id"], "over-limit")
            continue
        db.execute("UPDATE outbox SET outcome = 'sending' WHERE id = ?", (newest["id"],))
        return _item(newest), None


def forget_unannounced(db: Connection, build_id: int) -> bool:
    """Drop a build's waiting states if GitHub never heard of it; False if it did."""
    heard = db.execute(
        "SELECT 1 FROM outbox WHERE build_id = ? AND outcome IN ('sent', 'sending') LIMIT 1",
        (build_id,),
    ).fetchone()
    if heard is not None:
        return False
    drop_waiting(db, build_id)
    return True


def drop_waiting(db: Connection, build_id: int) -> None:
    drop_waiting_many(db, [build_id])


def drop_waiting_many(db: Connection, build_ids: Iterable[int]) -> None:
    now = db.now()
    db.executemany(
        "UPDATE outbox SET done_at = ?, outcome = 'dropped' WHERE build_id = ? AND done_at IS NULL",
        [(now, build_id) for build_id in build_ids],
    )


def mark(db: Connection, item_id: int, outcome: str) -> None:
    _close(db, db.now(), item_id, outcome)


def retry(db: Connection, item_id: int, next_attempt_at: float) -> None:
    db.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
        (next_attempt_at, item_id),
    )


def _close_older(db: Connection, now: float, newest: Row) -> None:
    """Collapse the older waiting states under `newest`: its own build's, and other builds'
    pending ones. Another build's final state is still sent: as a check run each build has a
    run of its own, which would otherwise stay `in_progress` for ever."""
    db.execute(
        "UPDATE outbox SET done_at = ?, outcome = 'collapsed' WHERE done_at IS NULL"
        " AND repository = ? AND sha = ? AND context = ? AND id < ?"
        " AND (build_id = ? OR state = ?)",
        (
            now,
            newest["repository"],
            newest["sha"],
            newest["context"],
            newest["id"],
            newest["build_id"],
            StatusState.PENDING.value,
        ),
    )


def _close(db: Connection, now: float, item_id: int, outcome: str) -> None:
    db.execute("UPDATE outbox SET done_at = ?, outcome = ? WHERE id = ?", (now, outcome, item_id))


def _sent_count(db: Connection, row: Row) -> int:
    count = db.execute(
        "SELECT COUNT(*) FROM outbox WHERE repository = ? AND sha = ? AND context = ?"
        " AND outcome = 'sent'",
        (row["repository"], row["sha"], row["context"]),
    ).fetchone()[0]
    return int(count)


def _item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        build_id=row["build_id"],
        repository=row["repository"],
        sha=row["sha"],
        context=row["context"],
        status=Status(StatusState(row["state"]), row["description"]),
        attempts=row["attempts"],
    )


def pending_count(db: Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL").fetchone()[0])
