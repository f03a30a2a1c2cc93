"""What the REST API asks of builds beyond the store's own methods (run by `Store.transact`)."""

import sqlite3


def latest_ref_of_sha(db: sqlite3.Connection, repository: str, sha: str) -> tuple[str, str] | None:
    """(ref, branch) of the newest build of `sha`: what a re-run by sha is built as."""
    row = db.execute(
        "SELECT ref, branch FROM builds WHERE repository = ? COLLATE NOCASE AND sha = ?"
        " ORDER BY id DESC LIMIT 1",
        (repository, sha),
    ).fetchone()
    return None if row is None else (str(row["ref"]), str(row["branch"]))
