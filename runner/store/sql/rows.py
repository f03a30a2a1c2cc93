"""Rows of the `builds` table as the rest of the store sees them, and the writes every part of
the SQLite store shares: inserting a build (with its `Queued` status) and ending one."""

from collections.abc import Iterable, Sequence

from runner.core import statuses
from runner.core.models import WAITING_FOR_APPROVAL, Build, BuildRequest, BuildState, Job
from runner.scheduling import rules
from runner.store.sql import outbox
from runner.store.sql.connection import Connection, Row

PLAIN = "SELECT b.* FROM builds AS b"
# The facts of the builds a query returns, and whether GitHub heard of each.
FACTS = (
    "SELECT b.*, EXISTS (SELECT 1 FROM outbox AS o WHERE o.build_id = b.id"
    " AND o.outcome IN ('sent', 'sending')) AS heard FROM builds AS b"
)


def request_of(row: Row) -> BuildRequest:
    return BuildRequest(
        repository=row["repository"],
        sha=row["sha"],
        ref=row["ref"],
        branch=row["branch"],
        job=Job(row["job"]),
        pull_request=row["pull_request"],
        from_fork=bool(row["from_fork"]),
        deploy_after_test=bool(row["deploy_after_test"]),
        message=row["message"],
        author=row["author"],
        pushed_at=row["pushed_at"],
        needs_approval=row["approval"] is not None,
        before=row["before_sha"],
        asked_by=row["asked_by"],
        scheduled=bool(row["scheduled"]),
    )


def build_of(row: Row) -> Build:
    return Build(
        id=row["id"],
        request=request_of(row),
        state=BuildState(row["state"]),
        description=row["description"],
        delivery_id=row["delivery_id"],
        received_at=row["received_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempt=row["attempt"],
        exit_code=row["exit_code"],
        lease_owner=row["lease_owner"],
        ran_on=row["ran_on"],
        approval=row["approval"],
        parent_id=row["parent_id"],
        rerun_of=row["rerun_of"],
    )


def facts_of(row: Row) -> rules.BuildFacts:
    """A row as the queue's rules see it; `heard` only where the query asked for it."""
    return rules.BuildFacts(
        id=row["id"],
        request=request_of(row),
        state=BuildState(row["state"]),
        attempt=row["attempt"],
        not_before=row["not_before"],
        # Row: `in` looks at the values; the keys are the columns.
        heard=bool(row["heard"]) if "heard" in row.keys() else False,  # noqa: SIM118
    )


def row(db: Connection, build_id: int) -> Row:
    found: Row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return found


def facts(
    db: Connection,
    repository: str,
    state: BuildState,
    job: Job | None = None,
    ref: str | None = None,
    *,
    heard: bool = True,
) -> list[rules.BuildFacts]:
    """The repository's builds in `state` (of `job`, on `ref`), as the rules see them; `heard`
    False skips asking whether GitHub heard of each.

    The state is written into the query, not bound: SQLite plans a bound state several times
    slower (it cannot tell how selective it is).
    """
    query = f"{FACTS if heard else PLAIN} WHERE b.state = '{BuildState(state).value}'"
    query += " AND b.repository = ?"
    arguments: tuple[object, ...] = (repository,)
    if job is not None:
        query += " AND b.job = ?"
        arguments += (job.value,)
    if ref is not None:
        query += " AND b.ref = ?"
        arguments += (ref,)
    return [facts_of(found) for found in db.execute(query, arguments)]


# A waiting build's `not_before`: far beyond any real time (year 2286), but a REAL and a
# PostgreSQL double alike.
NEVER_DUE = 1e10

INSERT_BUILD = (
    "INSERT INTO builds (delivery_id, parent_id, repository, job, sha, ref, branch,"
    " pull_request, from_fork, deploy_after_test, message, author, state, description,"
    " received_at, queued_at, not_before, pushed_at, finished_at, approval, before_sha, asked_by,"
    " scheduled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id"
)


def build_values(
    request: BuildRequest,
    delivery_id: str | None,
    received_at: float,
    parent_id: int | None,
    now: float,
    not_before: float | None = None,
    ended_as: str | None = None,
) -> tuple[object, ...]:
    """`INSERT_BUILD`'s parameters: a queued build, or one that ended `error` as it was born
    (`ended_as`: why)."""
    state, description = BuildState.QUEUED, "Queued"
    approval = WAITING_FOR_APPROVAL if request.needs_approval else None
    if approval is not None:
        # Never due until approved: a daemon of an older version, which knows no approvals,
        # sees a build that is not due yet, and runs nothing.
        description, not_before = statuses.waiting_for_approval().description, NEVER_DUE
    if ended_as is not None:
        state, description = BuildState.ERROR, statuses.truncate(ended_as)
    return (
        delivery_id,
        parent_id,
        request.repository,
        request.job.value,
        request.sha,
        request.ref,
        request.branch,
        request.pull_request,
        request.from_fork,
        request.deploy_after_test,
        request.message,
        request.author,
        state.value,
        description,
        received_at,
        now,
        not_before,
        request.pushed_at,
        None if ended_as is None else now,
        approval,
        request.before,
        request.asked_by,
        request.scheduled,
    )


def insert_build(
    db: Connection,
    request: BuildRequest,
    delivery_id: str | None,
    received_at: float,
    parent_id: int | None,
    not_before: float | None = None,
) -> int:
    values = build_values(request, delivery_id, received_at, parent_id, db.now(), not_before)
    build_id = int(db.execute(INSERT_BUILD, values).fetchone()[0])
    outbox.enqueue(db, build_id, request, statuses.first(request))
    return build_id


def end(
    db: Connection,
    build_id: int,
    state: BuildState,
    description: str,
    exit_code: int | None,
) -> None:
    db.execute(_END, (state.value, statuses.truncate(description), exit_code, db.now(), build_id))


def end_many(db: Connection, superseded: Sequence[tuple[int, str]]) -> None:
    """End these (build id, why) as `error`, in one statement."""
    now = db.now()
    db.executemany(
        _END,
        [
            (BuildState.ERROR.value, statuses.truncate(why), None, now, build_id)
            for build_id, why in superseded
        ],
    )


_END = (
    "UPDATE builds SET state = ?, description = ?, exit_code = ?, finished_at = ?,"
    " lease_owner = NULL, lease_expires = NULL WHERE id = ?"
)


def end_queued(db: Connection, queued: Row, description: str, heard: bool | None = None) -> None:
    """End a queued build as `error`; GitHub hears why only if it heard of the build before.

    `heard` None: look it up now (callers whose query did not answer it already).
    """
    end_waiting(db, queued["id"], request_of(queued), description, heard)


def end_waiting(
    db: Connection, build_id: int, request: BuildRequest, description: str, heard: bool | None
) -> None:
    end(db, build_id, BuildState.ERROR, description, None)
    if heard is None:
        heard = not outbox.forget_unannounced(db, build_id)
    elif not heard:
        outbox.drop_waiting(db, build_id)
    if heard:
        outbox.enqueue(db, build_id, request, statuses.errored(description))


def supersede(
    db: Connection, ended: tuple[rules.Supersede, ...], known: Iterable[rules.BuildFacts] = ()
) -> None:
    """End what the rules superseded (`known`: the facts already read of them)."""
    facts_by_id = {facts.id: facts for facts in known}
    for decision in ended:
        found = facts_by_id.get(decision.build_id)
        request = found.request if found else request_of(row(db, decision.build_id))
        end_waiting(db, decision.build_id, request, decision.reason, decision.tell_github)


def lock_repositories(db: Connection, repositories: Iterable[str]) -> None:
    """Take these repositories' locks up front, in the one order every transaction uses (a
    repository's lock may be taken again later: it is the transaction's already)."""
    for repository in sorted({name.lower() for name in repositories}):
        db.lock(repository)
