"""What the REST API asks of builds beyond the store's own methods (run by `Store.transact`)."""

import sqlite3

from runner.models import Build
from runner.store.sqlite import build_of


def latest_build_of_sha(db: sqlite3.Connection, repository: str, sha: str) -> Build | None:
    """The newest build of `sha`: what a re-run by sha is built as."""
    row = db.execute(
        "SELECT * FROM builds WHERE repository = ? AND sha = ? ORDER BY id DESC LIMIT 1",
        (repository, sha),
    ).fetchone()
    return None if row is None else build_of(row)
