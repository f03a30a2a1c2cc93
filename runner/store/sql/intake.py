"""Deliveries and the builds they ask for, and the hooks they came through (for catch-up).

Deliveries that arrive while one transaction is written go together in the next, behind one
commit (group commit, `record_deliveries`). A batch is written in a fixed number of statements
whatever its size, because on a database across a network every statement is a round trip: its
deliveries in one, the lanes they touch read in one or two, then the rules decide each build in
memory, in arrival order, exactly as one delivery after another would (`rules.arrive`), and
what they decided is written in one statement per table. A batch that fails is written again one
delivery at a time, each in its own savepoint, so one bad delivery fails alone.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState
from runner.scheduling import rules
from runner.store.records import Delivery, DeliveryOutcome, Hook
from runner.store.sql import outbox, rows
from runner.store.sql.connection import Connection

Lane = tuple[str, str, str]  # repository (lower case), ref, job


def record_deliveries(
    db: Connection, deliveries: Sequence[Delivery]
) -> list[DeliveryOutcome | Exception]:
    """Several deliveries in one transaction: one commit (one fsync) for all; a delivery that
    fails leaves the others committed."""
    # Each repository's lock (several nodes) is taken up front, in one order for everyone, so
    # two nodes' batches never wait for each other in a cycle (and before any savepoint, whose
    # rollback would give a lock taken inside it up).
    rows.lock_repositories(db, [r.repository for d in deliveries for r in d.requests])
    if len(deliveries) == 1:  # alone in its transaction: it needs no savepoint
        return [record(db, deliveries[0])]
    db.execute("SAVEPOINT batch")
    try:
        together: list[DeliveryOutcome | Exception] = list(_record_together(db, deliveries))
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
    return _record_together(db, [delivery])[0]


def _record_together(db: Connection, deliveries: Sequence[Delivery]) -> list[DeliveryOutcome]:
    rows.lock_repositories(db, [r.repository for d in deliveries for r in d.requests])
    # The deliveries and the lanes they may touch in one round trip: a duplicate's lanes are
    # read for nothing, which costs less than waiting to know which deliveries are new.
    requests = [request for delivery in deliveries for request in delivery.requests]
    lane_reads = _Lanes.reads(requests)
    writes: list[tuple[str, Sequence[object]]] = [
        (_INSERT_DELIVERY, (d.id, d.event, d.hook_id, d.received_at, d.outcome)) for d in deliveries
    ]
    found = db.execute_together(writes + lane_reads)
    inserted, lanes_found = found[: len(deliveries)], found[len(deliveries) :]
    new = [
        delivery if written else None
        for delivery, written in zip(deliveries, inserted, strict=True)
    ]
    _remember_hooks(db, [delivery for delivery in new if delivery is not None])
    lanes = _Lanes.read(requests, lanes_found)
    plan = _Plan(db.now())
    arrived = [None if delivery is None else plan.arrive(delivery, lanes) for delivery in new]
    build_ids = plan.write(db)
    return [
        DeliveryOutcome(duplicate=True) if outcome is None else outcome.resolved(build_ids)
        for outcome in arrived
    ]


_INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event, hook_id, received_at, outcome)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _remember_hooks(db: Connection, deliveries: Iterable[Delivery]) -> None:
    """Each repository's hook, as its newest delivery names it (for catch-up)."""
    hooks = {d.hook_repository: d.hook_id for d in deliveries if d.hook_id and d.hook_repository}
    # Written only when it changed: one index lookup per repository, no page dirtied.
    db.executemany(
        "INSERT INTO hooks (repository, hook_id) VALUES (?, ?) ON CONFLICT (repository)"
        " DO UPDATE SET hook_id = excluded.hook_id WHERE hooks.hook_id != excluded.hook_id",
        list(hooks.items()),
    )


def _lane(request: BuildRequest) -> Lane:
    return (request.repository.lower(), request.ref, request.job.value)


@dataclass
class _Lanes:
    """What the rules need to know of the lanes a batch touches, as stored, then as the batch
    changes them: the repositories' queued and running builds, each lane's newest push."""

    waiting: dict[str, dict[int, rules.BuildFacts]]  # repository (lower case) → queued by id
    running: dict[str, list[rules.BuildFacts]]
    newest_push: dict[Lane, tuple[float, str]]  # (pushed_at, sha)

    @staticmethod
    def reads(requests: Sequence[BuildRequest]) -> list[tuple[str, Sequence[object]]]:
        """The statements that read what the rules need of these requests' lanes."""
        return [
            (
                f"{rows.FACTS} WHERE b.state IN ('{BuildState.QUEUED.value}',"
                f" '{BuildState.RUNNING.value}') AND b.repository = ?",
                (repository,),
            )
            for repository in _repositories(requests)
        ] + [
            (
                "SELECT sha, pushed_at FROM builds WHERE repository = ? AND ref = ? AND job = ?"
                " AND pushed_at IS NOT NULL ORDER BY pushed_at DESC LIMIT 1",
                lane,
            )
            for lane in _pushed_lanes(requests)
        ]

    @classmethod
    def read(cls, requests: Sequence[BuildRequest], found: Sequence[list[Any]]) -> "_Lanes":
        """The lanes, from what `reads(requests)` found."""
        lanes = cls({}, {}, {})
        repositories = _repositories(requests)
        for repository, builds in zip(repositories, found[: len(repositories)], strict=True):
            waiting = lanes.waiting.setdefault(repository.lower(), {})
            running = lanes.running.setdefault(repository.lower(), [])
            for facts in map(rows.facts_of, builds):
                if facts.state is BuildState.QUEUED:
                    waiting[facts.id] = facts
                else:
                    running.append(facts)
        newest = found[len(repositories) :]
        for (repository, ref, job), top in zip(_pushed_lanes(requests), newest, strict=True):
            if top:
                lanes.note_push((repository.lower(), ref, job), top[0]["pushed_at"], top[0]["sha"])
        return lanes

    def note_push(self, lane: Lane, pushed_at: float | None, sha: str) -> None:
        if pushed_at is not None and pushed_at > self.newest_push.get(lane, (-1.0, ""))[0]:
            self.newest_push[lane] = (pushed_at, sha)

    def pushed_later(self, request: BuildRequest) -> str | None:
        """The sha of a build of `request`'s lane pushed after it, if GitHub says so."""
        if request.pushed_at is None:
            return None
        newest = self.newest_push.get(_lane(request))
        return newest[1] if newest is not None and newest[0] > request.pushed_at else None


def _repositories(requests: Sequence[BuildRequest]) -> list[str]:
    return sorted({request.repository for request in requests})


def _pushed_lanes(requests: Sequence[BuildRequest]) -> list[tuple[str, str, str]]:
    return sorted({(r.repository, r.ref, r.job.value) for r in requests if r.pushed_at is not None})


@dataclass
class _NewBuild:
    delivery: Delivery
    request: BuildRequest
    not_before: float | None
    ended_as: str | None = None  # superseded within the batch, or born superseded


@dataclass
class _Arrived:
    """A delivery's outcome, with the batch's new builds named by their place in it (their
    ids are known once they are written): negative numbers, -1 the first."""

    build_ids: list[int]
    superseded_ids: list[int]
    running: list[tuple[int, str]]

    def resolved(self, ids: Sequence[int]) -> DeliveryOutcome:
        return DeliveryOutcome(
            False,
            tuple(_real_id(build_id, ids) for build_id in self.build_ids),
            tuple(_real_id(build_id, ids) for build_id in self.superseded_ids),
            tuple(self.running),
        )


def _real_id(build_id: int, ids: Sequence[int]) -> int:
    """A build's id, once the batch's new builds (`ids`, in order) are written."""
    return ids[-build_id - 1] if build_id < 0 else build_id


@dataclass
class _Plan:
    """What a batch writes, decided in arrival order: its new builds, the stored builds it
    ends (superseded), the statuses it posts (`posts`), the running builds it asks to stop."""

    now: float
    new: list[_NewBuild] = field(default_factory=list)
    ended: list[tuple[rules.BuildFacts, str, bool]] = field(default_factory=list)
    posts: list[tuple[int, BuildRequest, statuses.Status]] = field(default_factory=list)
    stops: list[tuple[str, int]] = field(default_factory=list)

    def arrive(self, delivery: Delivery, lanes: _Lanes) -> _Arrived:
        arrived = _Arrived([], [], [])
        for request in delivery.requests:
            repository = request.repository.lower()
            later = lanes.pushed_later(request)
            waiting = lanes.waiting.setdefault(repository, {})
            running = lanes.running.get(repository, [])
            arrival = rules.arrive(
                request,
                later_push=later,
                queued=() if later else list(waiting.values()),
                running=() if later or not delivery.stop_running else running,
                stop_running=delivery.stop_running,
                now=self.now,
            )
            self.stops += [(reason, build_id) for build_id, reason in arrival.stop_running]
            build_id = -len(self.new) - 1
            self.new.append(_NewBuild(delivery, request, arrival.not_before))
            self.posts.append((build_id, request, statuses.first(request)))
            lanes.note_push(_lane(request), request.pushed_at, request.sha)
            arrived.build_ids.append(build_id)
            if arrival.born_superseded_by is not None:
                # An old push arriving late (a redelivery): it would supersede the branch's head.
                self.new[-1].ended_as = statuses.superseded_by(arrival.born_superseded_by)
                continue
            for decision in arrival.supersede:
                self._end(waiting.pop(decision.build_id), decision)
                arrived.superseded_ids.append(decision.build_id)
            arrived.running += [(stopped, request.sha) for stopped, _ in arrival.stop_running]
            waiting[build_id] = rules.BuildFacts(
                build_id, request, BuildState.QUEUED, not_before=arrival.not_before
            )
        return arrived

    def _end(self, build: rules.BuildFacts, decision: rules.Supersede) -> None:
        if build.id < 0:  # this batch's: GitHub cannot have heard of it yet
            self.new[-build.id - 1].ended_as = decision.reason
            return
        self.ended.append((build, decision.reason, decision.tell_github))
        if decision.tell_github:
            self.posts.append((build.id, build.request, statuses.errored(decision.reason)))

    def write(self, db: Connection) -> list[int]:
        """Everything decided, one statement per kind; the new builds' ids, in order."""
        ids = [
            int(found[0][0])
            for found in db.execute_each(
                rows.INSERT_BUILD,
                [
                    rows.build_values(
                        new.request,
                        new.delivery.id,
                        new.delivery.received_at,
                        None,
                        self.now,
                        new.not_before,
                        new.ended_as,
                    )
                    for new in self.new
                ],
            )
        ]
        ended_new = {-index - 1 for index, new in enumerate(self.new) if new.ended_as}
        db.executemany(
            outbox.ENQUEUE,
            [
                outbox.item_values(
                    _real_id(build_id, ids),
                    request,
                    status,
                    self.now,
                    dropped=build_id in ended_new,
                )
                for build_id, request, status in self.posts
            ],
        )
        rows.end_many(db, [(build.id, reason) for build, reason, _ in self.ended])
        outbox.drop_waiting_many(db, [build.id for build, _, heard in self.ended if not heard])
        db.executemany(
            "UPDATE builds SET stop_reason = ? WHERE id = ? AND stop_reason IS NULL", self.stops
        )
        return ids


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
