"""Deliveries and the builds they ask for, and the hooks they came through (for catch-up).

A delivery and its builds are one savepoint inside a group-committed transaction
(`record_deliveries`): deliveries that arrive while one transaction is written go together in
the next, behind one fsync. What a new build does to its lane is `rules.arrive`'s decision.
"""

from collections.abc import Iterable, Sequence

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState, Job
from runner.scheduling import rules
from runner.store.records import Delivery, DeliveryOutcome, Hook
from runner.store.sql import rows
from runner.store.sql.connection import Connection


def record_deliveries(
    db: Connection, deliveries: Sequence[Delivery]
) -> list[DeliveryOutcome | Exception]:
    """Several deliveries in one transaction: one fsync for all (group commit).

    Each delivery is its own savepoint, so one that fails leaves the others committed.
    """
    if len(deliveries) == 1:  # alone in its transaction: it needs no savepoint
        return [record(db, deliveries[0])]
    # Each repository's lock (several nodes) is taken up front, in one order for everyone, so
    # two nodes' batches never wait for each other in a cycle.
    rows.lock_repositories(db, [r.repository for d in deliveries for r in d.requests])
    # All at once first (two statements for the batch); only if one fails, one at a time, each
    # in its own savepoint (two statements each), so that one leaves the others committed.
    db.execute("SAVEPOINT batch")
    try:
        together: list[DeliveryOutcome | Exception] = [record(db, d) for d in deliveries]
        db.execute("RELEASE batch")
        return together
    except Exception:
        db.execute("ROLLBACK TO batch")
    answers: list[DeliveryOutcome | Exception] = []
    for delivery in deliveries:
        db.execute("SAVEPOINT delivery")
        try:
            answers.append(record(db, delivery))
        except Exception as error:  # answered to that delivery's request alone
            db.execute("ROLLBACK TO delivery")
            answers.append(error)
        db.execute("RELEASE delivery")
    db.execute("RELEASE batch")
    return answers


def record(db: Connection, delivery: Delivery) -> DeliveryOutcome:
    """A delivery and the builds it asks for; a known delivery id changes nothing."""
    # Every lock first, in the one order (several nodes): a row lock taken before a
    # repository's lock (the hook's, say) would let two transactions wait for each other.
    rows.lock_repositories(db, [request.repository for request in delivery.requests])
    inserted = db.execute(
        "INSERT INTO deliveries (id, event, hook_id, received_at, outcome)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (delivery.id, delivery.event, delivery.hook_id, delivery.received_at, delivery.outcome),
    ).rowcount
    if not inserted:
        return DeliveryOutcome(duplicate=True)
    if delivery.hook_id and delivery.hook_repository:
        # Written only when it changed: one index lookup per delivery, no page dirtied.
        db.execute(
            "INSERT INTO hooks (repository, hook_id) VALUES (?, ?) ON CONFLICT (repository)"
            " DO UPDATE SET hook_id = excluded.hook_id WHERE hooks.hook_id != excluded.hook_id",
            (delivery.hook_repository, delivery.hook_id),
        )
    build_ids: list[int] = []
    superseded: list[int] = []
    running: list[tuple[int, str]] = []
    now = db.now()
    for request in delivery.requests:
        later = pushed_later(db, request)
        waiting = () if later else _lane(db, request, BuildState.QUEUED)
        busy = () if later or not delivery.stop_running else _running_tests(db, request)
        arrival = rules.arrive(
            request,
            later_push=later,
            queued=waiting,
            running=busy,
            stop_running=delivery.stop_running,
            now=now,
        )
        for build_id, reason in arrival.stop_running:
            db.execute(
                "UPDATE builds SET stop_reason = ? WHERE id = ? AND stop_reason IS NULL",
                (reason, build_id),
            )
        build_id = rows.insert_build(
            db, request, delivery.id, delivery.received_at, None, arrival.not_before
        )
        build_ids.append(build_id)
        if arrival.born_superseded_by is not None:
            # An old push arriving late (a redelivery): it would supersede the branch's head.
            reason = statuses.superseded_by(arrival.born_superseded_by)
            rows.end_queued(db, rows.row(db, build_id), reason, heard=False)
            continue
        rows.supersede(db, arrival.supersede, waiting)
        superseded += [ended.build_id for ended in arrival.supersede]
        running += [(stopped, request.sha) for stopped, _ in arrival.stop_running]
    return DeliveryOutcome(False, tuple(build_ids), tuple(superseded), tuple(running))


def pushed_later(db: Connection, request: BuildRequest) -> str | None:
    """The sha of a build in `request`'s lane pushed after it, if GitHub says so."""
    if request.pushed_at is None:
        return None
    found = db.execute(
        "SELECT sha FROM builds WHERE repository = ? AND ref = ? AND job = ?"
        " AND pushed_at > ? ORDER BY pushed_at DESC LIMIT 1",
        (request.repository, request.ref, request.job.value, request.pushed_at),
    ).fetchone()
    return None if found is None else str(found["sha"])


def _lane(db: Connection, request: BuildRequest, state: BuildState) -> list[rules.BuildFacts]:
    """What `rules.arrive` may supersede: the lane's builds (a deploy's lane is every deploy of
    the repository), read through the lane's index."""
    ref = None if request.job is Job.DEPLOY else request.ref
    return rows.facts(db, request.repository, state, request.job, ref)


def _running_tests(db: Connection, request: BuildRequest) -> list[rules.BuildFacts]:
    if request.job is not Job.TEST:
        return []
    return rows.facts(
        db, request.repository, BuildState.RUNNING, Job.TEST, request.ref, heard=False
    )


def hooks(db: Connection) -> list[Hook]:
    found = db.execute("SELECT * FROM hooks ORDER BY repository").fetchall()
    return [Hook(row["repository"], row["hook_id"], row["checked_until"]) for row in found]


def set_hook_checked(db: Connection, repository: str, until: float) -> None:
    db.execute(
        "UPDATE hooks SET checked_until = CASE WHEN checked_until > ? THEN checked_until ELSE ? END"
        " WHERE repository = ?",
        (until, until, repository),
    )


def known_deliveries(db: Connection, delivery_ids: Iterable[str]) -> set[str]:
    known: set[str] = set()
    for delivery_id in delivery_ids:
        if db.execute("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)).fetchone():
            known.add(delivery_id)
    return known
