"""Each repository's schedule as last seen, and the slot it built last (`Schedules`)."""

from runner.store.records import ScheduleRecord
from runner.store.sql.connection import Connection


def seen(db: Connection, repository: str, expression: str) -> ScheduleRecord:
    key = repository.lower()
    db.lock(key)
    found = db.execute(
        "SELECT expression, since, built_slot FROM schedules WHERE repository = ?", (key,)
    ).fetchone()
    if found is not None and found["expression"] == expression:
        return ScheduleRecord(found["since"], found["built_slot"])
    now = db.now()
    db.execute(
        "INSERT INTO schedules (repository, expression, since, built_slot) VALUES (?, ?, ?, NULL)"
        " ON CONFLICT (repository) DO UPDATE SET expression = excluded.expression,"
        " since = excluded.since, built_slot = NULL",
        (key, expression, now),
    )
    return ScheduleRecord(now, None)


def built(db: Connection, repository: str, slot: float) -> None:
    db.execute(
        "UPDATE schedules SET built_slot = ? WHERE repository = ?"
        " AND (built_slot IS NULL OR built_slot < ?)",
        (slot, repository.lower(), slot),
    )
