"""Named leases for work only one daemon may do at a time (posting statuses serially), and
pauses every daemon honours (GitHub's rate limit)."""

from collections.abc import Callable

from runner.store.sql.connection import Connection


def acquire(
    db: Connection,
    name: str,
    owner: str,
    seconds: float,
    is_gone: Callable[[str | None], bool] = lambda _owner: False,
) -> bool:
    """Take or renew the lease `name`; False while another live owner holds it unexpired.

    A holder known to be gone (`is_gone`: it died on this host) loses the lease at once, so a
    restarted daemon does not wait out its predecessor's lease.
    """
    now = db.now()
    row = db.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
    held_by_another = row is not None and row["owner"] != owner and row["expires"] >= now
    if held_by_another and not is_gone(row["owner"]):
        return False
    db.execute(
        "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name)"
        " DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
        (name, owner, now + seconds),
    )
    return True


def pause(db: Connection, name: str, until: float) -> None:
    """Record that `name` (posting to GitHub) waits until `until`, for every daemon."""
    db.execute(
        "INSERT INTO leases (name, owner, expires) VALUES (?, 'pause', ?) ON CONFLICT"
        " (name) DO UPDATE SET expires = CASE WHEN leases.expires > excluded.expires"
        " THEN leases.expires ELSE excluded.expires END",
        (name, until),
    )


def paused_until(db: Connection, name: str) -> float:
    row = db.execute("SELECT expires FROM leases WHERE name = ?", (name,)).fetchone()
    return 0.0 if row is None else float(row[0])


def drop(db: Connection, name: str, owner: str) -> None:
    db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def probe(db: Connection) -> None:
    """One small write, to learn whether the store can write again."""
    db.execute(
        "INSERT INTO leases (name, owner, expires) VALUES ('store-probe', '', ?)"
        " ON CONFLICT (name) DO UPDATE SET expires = excluded.expires",
        (db.now(),),
    )
