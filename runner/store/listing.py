"""What the pages read: lists of builds in SQL, as rows (the store turns them into `Build`s).

Functions over an open connection, like `runner.store.outbox`; each is one or two indexed
queries (`builds_by_repository`, `builds_by_lane`, `builds_by_state`), so a page costs the same
with ten builds or the `builds.keep_per_repository` thousand.
"""

import sqlite3

# Builds that ended "Superseded by …" (`runner.core.statuses.superseded_by`) never ran for their
# commit: a branch's badge and latest state look past them.
_NOT_SUPERSEDED = "NOT (state = 'error' AND description LIKE 'Superseded by %')"


def repositories(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT DISTINCT repository FROM builds").fetchall()
    return [row[0] for row in rows]


def latest_per_lane(db: sqlite3.Connection, repository: str, limit: int) -> list[sqlite3.Row]:
    """The newest build of each ref and job of a repository, newest lanes first."""
    return db.execute(
        "SELECT * FROM builds WHERE id IN"  # noqa: S608 - constant clauses
        " (SELECT MAX(id) FROM builds WHERE repository = ?"
        f" AND {_NOT_SUPERSEDED} GROUP BY ref, job) ORDER BY id DESC LIMIT ?",
        (repository, limit),
    ).fetchall()


def active(db: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    """Running builds, then queued ones, oldest first: what is happening now."""
    return db.execute(
        "SELECT * FROM builds WHERE state IN ('running', 'queued')"
        " ORDER BY state = 'queued', id LIMIT ?",
        (limit,),
    ).fetchall()


def page(
    db: sqlite3.Connection,
    repository: str,
    *,
    branch: str | None,
    state: str | None,
    before: int | None,
    limit: int,
) -> list[sqlite3.Row]:
    """One page of a repository's builds, newest first, older than build `before`."""
    where = ["repository = ?"]
    arguments: list[object] = [repository]
    if branch is not None:
        where.append("branch = ?")
        arguments.append(branch)
    if state is not None:
        where.append("state = ?")
        arguments.append(state)
    if before is not None:
        where.append("id < ?")
        arguments.append(before)
    return db.execute(
        f"SELECT * FROM builds WHERE {' AND '.join(where)}"  # noqa: S608 - constant clauses
        " ORDER BY id DESC LIMIT ?",
        (*arguments, limit),
    ).fetchall()


def latest_test(db: sqlite3.Connection, repository: str, branch: str) -> sqlite3.Row | None:
    """The newest test build of a branch (pushes, not pull requests) that was not superseded."""
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM builds"  # noqa: S608 - constant clauses
        " WHERE repository = ? AND ref = ? AND job = 'test'"
        f" AND {_NOT_SUPERSEDED} ORDER BY id DESC LIMIT 1",
        (repository, f"refs/heads/{branch}"),
    ).fetchone()
    return row


def latest_of_sha(db: sqlite3.Connection, repository: str, sha: str) -> sqlite3.Row | None:
    """The newest build of a commit: what a re-run of it by sha is built as."""
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM builds WHERE repository = ? AND sha = ? ORDER BY id DESC LIMIT 1",
        (repository, sha),
    ).fetchone()
    return row


def deploy_branch(db: sqlite3.Connection, repository: str) -> str | None:
    """The branch the newest deploy-bound push went to: the repository's default branch (or
    its configured deploy branch) as intake saw it."""
    row = db.execute(
        "SELECT branch FROM builds WHERE repository = ? AND pull_request IS NULL"
        " AND (deploy_after_test = 1 OR job = 'deploy') ORDER BY id DESC LIMIT 1",
        (repository,),
    ).fetchone()
    return None if row is None else str(row[0])


def by_ids(db: sqlite3.Connection, build_ids: list[int]) -> list[sqlite3.Row]:
    marks = ",".join("?" * len(build_ids))
    return db.execute(
        f"SELECT * FROM builds WHERE id IN ({marks})",  # noqa: S608 - placeholders only
        build_ids,
    ).fetchall()
