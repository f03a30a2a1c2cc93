"""Builds as the REST API lists and cancels them (functions run by `Store.transact`)."""

import sqlite3
from dataclasses import dataclass

from runner.models import Build, BuildState
from runner.store.sqlite import build_of, end_queued


@dataclass(frozen=True)
class Cancelled:
    build: Build | None  # None: no such build
    was_final: bool = False
    running: bool = False  # its daemon was asked to stop it (read at its heartbeat)


def builds_of(
    db: sqlite3.Connection,
    repository: str,
    *,
    branch: str | None,
    state: str | None,
    before: int | None,
    limit: int,
) -> list[Build]:
    """The repository's builds, newest first, optionally of one branch and state."""
    query = "SELECT * FROM builds WHERE repository = ? COLLATE NOCASE"
    params: list[object] = [repository]
    if branch is not None:
        query += " AND branch = ?"
        params.append(branch)
    if state is not None:
        query += " AND state = ?"
        params.append(state)
    if before is not None:
        query += " AND id < ?"
        params.append(before)
    query += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [build_of(row) for row in db.execute(query, params).fetchall()]


def latest_ref_of_sha(db: sqlite3.Connection, repository: str, sha: str) -> tuple[str, str] | None:
    """(ref, branch) of the newest build of `sha`: what a re-run by sha is built as."""
    row = db.execute(
        "SELECT ref, branch FROM builds WHERE repository = ? COLLATE NOCASE AND sha = ?"
        " ORDER BY id DESC LIMIT 1",
        (repository, sha),
    ).fetchone()
    return None if row is None else (str(row["ref"]), str(row["branch"]))


def cancel(db: sqlite3.Connection, build_id: int, reason: str) -> Cancelled:
    """End a queued build now, or ask the daemon running it to stop it."""
    row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    if row is None:
        return Cancelled(None)
    if BuildState(row["state"]).is_final:
        return Cancelled(build_of(row), was_final=True)
    if row["state"] == BuildState.QUEUED:
        end_queued(db, row, reason)
        return Cancelled(build_of(_reread(db, build_id)))
    db.execute(
        "UPDATE builds SET stop_reason = ? WHERE id = ? AND stop_reason IS NULL",
        (reason, build_id),
    )
    return Cancelled(build_of(row), running=True)


def _reread(db: sqlite3.Connection, build_id: int) -> sqlite3.Row:
    row: sqlite3.Row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return row
