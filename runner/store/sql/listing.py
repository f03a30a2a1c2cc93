"""What the pages and the API read: lists of builds, each one or two indexed
queries (`builds_by_repository`, `builds_by_lane`, `builds_by_state`), so a page costs the same
with ten builds or the `builds.keep_per_repository` thousand.
"""

from collections.abc import Iterable

from runner.core.models import Build
from runner.store.sql.connection import Connection, Row
from runner.store.sql.rows import build_of

# Builds that ended "Superseded by …" (`runner.core.statuses.superseded_by`) never ran for their
# commit: a branch's badge and latest state look past them.
_NOT_SUPERSEDED = "NOT (state = 'error' AND description LIKE 'Superseded by %')"


def repositories(db: Connection) -> list[str]:
    rows = db.execute("SELECT DISTINCT repository FROM builds").fetchall()
    return [row[0] for row in rows]


def latest_per_lane(
    db: Connection, repositories: Iterable[str], limit: int
) -> dict[str, list[Build]]:
    """The newest build of each ref and job of each repository, newest lanes first."""
    return {name: _latest_per_lane(db, name, limit) for name in repositories}


def _latest_per_lane(db: Connection, repository: str, limit: int) -> list[Build]:
    found = db.execute(
        "SELECT * FROM builds WHERE id IN"  # noqa: S608 - constant clauses
        " (SELECT MAX(id) FROM builds WHERE repository = ?"
        f" AND {_NOT_SUPERSEDED} GROUP BY ref, job) ORDER BY id DESC LIMIT ?",
        (repository, limit),
    )
    return [build_of(row) for row in found]


def active(db: Connection, limit: int) -> list[Build]:
    """Running builds, then queued ones, oldest first: what is happening now."""
    found = db.execute(
        "SELECT * FROM builds WHERE state IN ('running', 'queued')"
        " ORDER BY state = 'queued', id LIMIT ?",
        (limit,),
    )
    return [build_of(row) for row in found]


def followers(db: Connection, build_id: int) -> tuple[list[int], list[int]]:
    """The builds that came of `build_id`: (the deploys its success queued, its re-runs)."""
    deploys, reruns = db.execute_together(
        [
            ("SELECT id FROM builds WHERE parent_id = ? ORDER BY id", (build_id,)),
            ("SELECT id FROM builds WHERE rerun_of = ? ORDER BY id", (build_id,)),
        ]
    )
    return [row[0] for row in deploys], [row[0] for row in reruns]


def page(
    db: Connection,
    repository: str | None,
    *,
    branch: str | None = None,
    state: str | None = None,
    job: str | None = None,
    author: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Build]:
    """One page of builds (of a repository, or of all), newest first, older than build `before`.

    Each filter has an index that starts with it and ends with the id (`builds_by_repository`,
    and migration 0007's), so a page of a rare branch or author among 100,000 builds reads a
    page of index entries, not the table."""
    where = ["1 = 1"]
    arguments: list[object] = []
    for column, value in (
        ("repository", repository),
        ("branch", branch),
        ("state", state),
        ("job", job),
        ("author", author),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            arguments.append(value)
    if before is not None:
        where.append("id < ?")
        arguments.append(before)
    found = db.execute(
        f"SELECT * FROM builds WHERE {' AND '.join(where)}"  # noqa: S608 - constant clauses
        " ORDER BY id DESC LIMIT ?",
        (*arguments, limit),
    )
    return [build_of(row) for row in found]


def latest_test(db: Connection, repository: str, branch: str) -> Build | None:
    """The newest test build of a branch (pushes, not pull requests) that was not superseded."""
    row: Row | None = db.execute(
        "SELECT * FROM builds"  # noqa: S608 - constant clauses
        " WHERE repository = ? AND ref = ? AND job = 'test'"
        f" AND {_NOT_SUPERSEDED} ORDER BY id DESC LIMIT 1",
        (repository, f"refs/heads/{branch}"),
    ).fetchone()
    return None if row is None else build_of(row)


def latest_of_sha(db: Connection, repository: str, sha: str) -> Build | None:
    """The newest build of a commit: what a re-run of it by sha is built as."""
    row: Row | None = db.execute(
        "SELECT * FROM builds WHERE repository = ? AND sha = ? ORDER BY id DESC LIMIT 1",
        (repository, sha),
    ).fetchone()
    return None if row is None else build_of(row)


def deploy_branch(db: Connection, repository: str) -> str | None:
    """The branch the newest deploy-bound push went to: the repository's default branch (or
    its configured deploy branch) as intake saw it."""
    row = db.execute(
        "SELECT branch FROM builds WHERE repository = ? AND pull_request IS NULL"
        " AND (deploy_after_test = 1 OR job = 'deploy') ORDER BY id DESC LIMIT 1",
        (repository,),
    ).fetchone()
    return None if row is None else str(row[0])


def by_ids(db: Connection, build_ids: Iterable[int]) -> dict[int, Build]:
    ids = list(build_ids)
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    found = db.execute(
        f"SELECT * FROM builds WHERE id IN ({marks})",  # noqa: S608 - placeholders only
        ids,
    )
    return {row["id"]: build_of(row) for row in found}


def by_id(db: Connection, build_id: int) -> Build | None:
    row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return None if row is None else build_of(row)


def state_counts(db: Connection) -> dict[str, int]:
    """How many builds are queued and running (over every daemon sharing the store)."""
    found = db.execute(
        "SELECT state, COUNT(*) FROM builds WHERE state IN ('queued', 'running') GROUP BY state"
    )
    return {"queued": 0, "running": 0} | {row[0]: int(row[1]) for row in found}
