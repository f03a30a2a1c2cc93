"""Builds from claim to end: claims and leases, results, recovery, cancel and re-run.

Each function runs inside one write transaction. A running build carries a lease (`lease_owner`,
`lease_expires`) that its daemon renews; a build whose lease lapsed, or whose owner is known
dead, is recovered by `rules.recover`. What starts, what a green test unlocks and what a re-run
may be are the queue's rules (`runner.scheduling.rules`); this module reads their rows and
writes their decisions.
"""

from collections.abc import Callable, Iterable
from dataclasses import replace

from runner.core import statuses
from runner.core.models import WAITING_FOR_APPROVAL, Build, BuildState, Job
from runner.core.statuses import Status
from runner.scheduling import rules
from runner.store.records import RecoveredBuild, Rerun
from runner.store.sql import notifications, outbox, rows
from runner.store.sql.connection import Connection, Row


def claim(
    db: Connection,
    limit: int,
    owner: str,
    lease_seconds: float,
    can_run: Callable[[str], bool] = lambda _repository: True,
) -> list[Build]:
    """Lease up to `limit` queued builds to `owner` (`rules.claim` picks them) of repositories
    it `can_run`."""
    if limit <= 0:
        return []
    db.lock("claim")  # one claim at a time, over every daemon sharing the store
    # The oldest queued build of each repository (the only ones that may start), and the
    # repositories with a build running, in one round trip.
    queued_rows, running_rows = db.execute_together(
        [
            (
                "SELECT b.* FROM builds AS b WHERE b.state = 'queued'"
                " AND COALESCE(b.approval, '') <> ?"
                " AND b.id = (SELECT MIN(q.id) FROM builds AS q"
                "             WHERE q.repository = b.repository AND q.state = 'queued'"
                "             AND COALESCE(q.approval, '') <> ?)",
                (WAITING_FOR_APPROVAL, WAITING_FOR_APPROVAL),
            ),
            ("SELECT DISTINCT repository FROM builds WHERE state = 'running'", ()),
        ]
    )
    now = db.now()
    heads = [rows.facts_of(row) for row in queued_rows if can_run(row["repository"])]
    busy = [row[0] for row in running_rows]
    deployed = [
        later for head in heads if head.job is Job.DEPLOY for later in _maybe_later(db, head)
    ]
    decision = rules.claim(heads, busy, deployed, limit=limit, now=now)
    facts = {head.id: head for head in heads}
    touched = [s.build_id for s in decision.supersede] + list(decision.start)
    rows.lock_repositories(db, [facts[build_id].repository for build_id in touched])
    for supersede in decision.supersede:
        # Under the repository's lock, as every decision on whether GitHub heard of a build
        # (`outbox.next_item`); the build may have ended meanwhile.
        row = rows.row(db, supersede.build_id)
        if row["state"] == BuildState.QUEUED.value:
            rows.end_queued(db, row, supersede.reason)
    started = []
    for build_id in decision.start:
        running = statuses.running(facts[build_id].job)
        row = db.execute(
            "UPDATE builds SET state = 'running', description = ?, started_at = ?,"
            " finished_at = NULL, exit_code = NULL, attempt = attempt + 1,"
            " lease_owner = ?, lease_expires = ?, stop_reason = NULL, ran_on = ?"
            " WHERE id = ? AND state = 'queued' RETURNING *",
            (running.description, now, owner, now + lease_seconds, owner, build_id),
        ).fetchone()
        if row is not None:  # not ended meanwhile by a delivery that held the repository's lock
            outbox.enqueue(db, build_id, rows.request_of(row), running)
            started.append(rows.build_of(row))
    return started


def _maybe_later(db: Connection, build: rules.BuildFacts) -> list[rules.BuildFacts]:
    """Successful deploys of `build`'s repository that may have been pushed after it (the rules
    decide which were)."""
    found = db.execute(
        "SELECT * FROM builds WHERE repository = ? AND job = 'deploy'"
        " AND state = 'success' AND (pushed_at > ? OR id > ?)",
        (build.repository, build.request.pushed_at, build.id),
    )
    return [rows.facts_of(row) for row in found]


def settling_until(db: Connection) -> float | None:
    """When the earliest settling build becomes claimable, if any build is settling."""
    found = db.execute(
        "SELECT MIN(not_before) FROM builds WHERE state = 'queued' AND not_before > ?"
        " AND COALESCE(approval, '') <> ?",
        (db.now(), WAITING_FOR_APPROVAL),
    ).fetchone()
    return None if found[0] is None else float(found[0])


def heartbeat(
    db: Connection, owner: str, build_ids: Iterable[int], lease_seconds: float
) -> dict[int, str | None]:
    """Renew the leases of `owner`'s running builds; returns each one's stop request.

    A build missing from the answer is no longer this owner's (its lease lapsed and another
    daemon recovered it): the caller stops it without reporting.
    """
    expires = db.now() + lease_seconds
    answer: dict[int, str | None] = {}
    for build_id in build_ids:
        row = db.execute(
            "UPDATE builds SET lease_expires = ? WHERE id = ? AND state = 'running'"
            " AND lease_owner = ? RETURNING stop_reason",
            (expires, build_id, owner),
        ).fetchone()
        if row is not None:
            answer[build_id] = row["stop_reason"]
    return answer


def finish(
    db: Connection,
    build_id: int,
    status: Status,
    exit_code: int | None,
    owner: str,
    attempt: int | None = None,
) -> int | None:
    """Record a build's final state; returns the id of the deploy it unlocks, if any.

    Only the lease's owner may finish a build: a daemon that lost its lease (it stalled and
    another recovered the build) changes nothing.
    """
    row = _running(db, build_id, owner)
    if row is None or (attempt is not None and row["attempt"] != attempt):
        return None
    state = BuildState(status.state.value)
    notifications.enqueue_if_told(db, row, state, status.description)
    rows.end(db, build_id, state, status.description, exit_code)
    outbox.enqueue(db, build_id, rows.request_of(row), status)
    deploy = rules.deploy_after(rows.facts_of(row), state)
    if deploy is None:
        return None
    deploy_id = rows.insert_build(db, deploy, row["delivery_id"], db.now(), build_id)
    waiting = rows.facts(db, deploy.repository, BuildState.QUEUED, Job.DEPLOY)
    rows.supersede(db, rules.superseded_by_deploy(deploy_id, deploy, waiting), waiting)
    return deploy_id


def _running(db: Connection, build_id: int, owner: str) -> Row | None:
    """The build, if it is running under `owner`'s lease; its repository's lock is held."""
    found = db.execute("SELECT repository FROM builds WHERE id = ?", (build_id,)).fetchone()
    if found is None:
        return None
    db.lock(found["repository"].lower())
    row: Row | None = db.execute(
        "SELECT * FROM builds WHERE id = ? AND state = 'running' AND lease_owner = ?",
        (build_id, owner),
    ).fetchone()
    return row


def set_commit_info(db: Connection, build_id: int, message: str, author: str) -> None:
    db.execute(
        "UPDATE builds SET message = ?, author = ? WHERE id = ?", (message, author, build_id)
    )


def recover_interrupted(
    db: Connection, is_gone: Callable[[str | None], bool], now: float | None = None
) -> list[RecoveredBuild]:
    """Recover running builds whose owner is gone (`is_gone`) or whose lease lapsed."""
    now = db.now() if now is None else now

    def lost(row: Row) -> bool:
        if row["state"] != BuildState.RUNNING.value:
            return False
        lapsed = row["lease_expires"] is None or row["lease_expires"] < now
        return lapsed or is_gone(row["lease_owner"])

    recovered = []
    running = db.execute("SELECT * FROM builds WHERE state = 'running'").fetchall()
    candidates = [row for row in running if lost(row)]
    rows.lock_repositories(db, [row["repository"] for row in candidates])
    for found in candidates:
        # Read again under the repository's lock: another node may have recovered the build
        # meanwhile, and another claimed it again (a new attempt, a live owner).
        row = _locked(db, found["id"]) if lost(found) else None
        if row is not None and lost(row):
            recovered.append(_recover(db, row))
    return recovered


def release(db: Connection, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]:
    """A daemon gives up builds it could not finish (drain timeout): recover them now."""
    recovered = []
    for build_id in build_ids:
        row = _running(db, build_id, owner)
        if row is not None:
            recovered.append(_recover(db, row))
    return recovered


def _recover(db: Connection, row: Row) -> RecoveredBuild:
    request = rows.request_of(row)
    db.lock(request.repository.lower())
    ref = None if request.job is Job.DEPLOY else request.ref
    waiting = rows.facts(db, request.repository, BuildState.QUEUED, request.job, ref)
    recovery = rules.recover(rows.facts_of(row), waiting)
    if recovery.requeue:
        db.execute(
            "UPDATE builds SET state = 'queued', description = 'Queued', lease_owner = NULL,"
            " lease_expires = NULL, stop_reason = NULL WHERE id = ?",
            (row["id"],),
        )
        outbox.enqueue(db, row["id"], request, statuses.queued(request.job))
        return RecoveredBuild(row["id"], requeued=True, attempt=row["attempt"])
    reason = recovery.reason or rules.INTERRUPTED
    notifications.enqueue_if_told(db, row, BuildState.ERROR, reason)  # a deploy lost with its node
    rows.end(db, row["id"], BuildState.ERROR, reason, None)
    outbox.enqueue(db, row["id"], request, statuses.errored(reason))
    return RecoveredBuild(row["id"], requeued=False, attempt=row["attempt"])


def running_owners(db: Connection) -> set[str]:
    found = db.execute("SELECT DISTINCT lease_owner FROM builds WHERE state = 'running'")
    return {row[0] for row in found if row[0]}


def cancel(db: Connection, build_id: int, reason: str) -> BuildState | None:
    """Cancel a build; returns the state it was in (None: no such build).

    A queued build ends `error` at once (GitHub hears why, unless it never heard of the build:
    then its waiting states are dropped, as for a superseded one). A running one is asked to
    stop, like a superseded running build: its daemon's heartbeat reads the request, and the
    build ends with `reason` as its status. Final builds stay as they are.
    """
    row = _locked(db, build_id)
    if row is None:
        return None
    state = BuildState(row["state"])
    if state is BuildState.QUEUED:
        rows.end_queued(db, row, reason)
    elif state is BuildState.RUNNING:
        db.execute(
            "UPDATE builds SET stop_reason = ? WHERE id = ? AND stop_reason IS NULL",
            (reason, build_id),
        )
    return state


def rerun(db: Connection, build_id: int, by: str = "") -> Rerun:
    """Queue a finished build's commit again, as `rules.rerun` says; it supersedes nothing.
    `by`: who asked for it."""
    row = _locked(db, build_id)
    if row is None:
        return Rerun(None, "no such build")
    later = db.execute(
        "SELECT * FROM builds WHERE repository = ? AND sha != ?"
        " AND state IN ('queued', 'running', 'success') AND (pushed_at > ? OR id > ?)",
        (row["repository"], row["sha"], row["pushed_at"], row["id"]),
    )
    plan = rules.rerun(rows.facts_of(row), [rows.facts_of(other) for other in later])
    if plan.request is None:
        return Rerun(None, plan.refused)
    new_id = rows.insert_build(db, replace(plan.request, asked_by=by), None, db.now(), None)
    db.execute("UPDATE builds SET rerun_of = ? WHERE id = ?", (build_id, new_id))
    return Rerun(new_id)


def approve(db: Connection, build_id: int, by: str) -> bool | None:
    """A person approves a fork's build that waits for it: it is queued as any build is. True
    when it was approved now; False when it was not waiting (approved already, superseded,
    cancelled) and nothing changed; None: no such build."""
    row = _locked(db, build_id)
    if row is None:
        return None
    if row["state"] != BuildState.QUEUED.value or row["approval"] != WAITING_FOR_APPROVAL:
        return False
    status = statuses.approved(by)
    db.execute(
        "UPDATE builds SET approval = ?, description = ?, not_before = NULL WHERE id = ?",
        (f"approved by {by}", status.description, build_id),
    )
    outbox.enqueue(db, build_id, rows.request_of(row), status)
    return True


def _locked(db: Connection, build_id: int) -> Row | None:
    """The build, read again once its repository's lock is held."""
    found = db.execute("SELECT repository FROM builds WHERE id = ?", (build_id,)).fetchone()
    if found is None:
        return None
    db.lock(found["repository"].lower())
    row: Row | None = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return row
