from runner.store.sql.connection import Connection

"""Retention: finished builds past `builds.keep_days` or beyond the newest
`builds.keep_per_repository` of their repository go, with their statuses."""


GITHUB_REDELIVERY_SECONDS = 3 * 24 * 3600


def prune(db: Connection, *, older_than: float, keep_per_repository: int) -> list[int]:
    """Delete finished builds past retention, with their statuses; returns their ids.

    Deliveries are kept as long as builds (and at least as long as GitHub may redeliver), since
    their ids are what makes redelivery safe.
    """
    found = db.execute(
        "SELECT id FROM (SELECT id, state, finished_at, ROW_NUMBER() OVER"
        " (PARTITION BY repository ORDER BY id DESC) AS newer FROM builds) AS ranked"
        " WHERE state IN ('success', 'failure', 'error')"
        " AND (finished_at < ? OR newer > ?)",
        (older_than, keep_per_repository),
    ).fetchall()
    ids = sorted(row["id"] for row in found)
    pruned = [(build_id,) for build_id in ids]
    db.executemany("DELETE FROM outbox WHERE done_at IS NOT NULL AND build_id = ?", pruned)
    db.executemany("DELETE FROM builds WHERE id = ?", pruned)
    db.executemany("DELETE FROM log_chunks WHERE build_id = ?", pruned)
    db.executemany("DELETE FROM notifications WHERE outcome = 'done' AND build_id = ?", pruned)
    # GitHub redelivers for three days: their ids must stay known at least that long.
    db.execute(
        "DELETE FROM deliveries WHERE received_at < ? AND id NOT IN"
        " (SELECT delivery_id FROM builds WHERE delivery_id IS NOT NULL)",
        (min(older_than, db.now() - GITHUB_REDELIVERY_SECONDS),),
    )
    return ids
