"""The SQLite store: synchronous, transactional, used from one thread only (see `runner.store`).

Each public method is one transaction. Commits are durable before they return (WAL with
`synchronous=FULL` fsyncs the log on every commit), which is what lets intake answer 2xx only
after a delivery is safe. Several daemons may share the file: a running build carries a lease
(`lease_owner`, `lease_expires`) that its daemon renews; a build whose lease lapsed, or whose
owner is known dead, is recovered by the rule in `_recover`. Claims are single conditional
UPDATEs inside `BEGIN IMMEDIATE`, which is the same protocol as `SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL.
"""

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from runner.core import statuses
from runner.core.models import Build, BuildRequest, BuildState, Job
from runner.core.statuses import Status
from runner.scheduling import rules
from runner.store import listing, outbox
from runner.store.outbox import OutboxItem

__all__ = [
    "Delivery",
    "DeliveryOutcome",
    "OutboxItem",
    "RecoveredBuild",
    "Rerun",
    "SQLiteStore",
]

GITHUB_REDELIVERY_SECONDS = 3 * 24 * 3600

_P = ParamSpec("_P")
_T = TypeVar("_T")


def database_path(data_dir: Path) -> Path:
    return data_dir / "hobotnica.sqlite3"


# Result codes that say "cannot write now", not "this is wrong": a full disk, an I/O error, a
# lock held past the busy timeout. Extended codes carry the primary one in their low byte.
_UNAVAILABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY}
_UNAVAILABLE |= {sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN}


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` is the store being unable to write now (retry later), not a bug."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE


@dataclass(frozen=True)
class DeliveryOutcome:
    duplicate: bool
    build_ids: tuple[int, ...] = ()
    superseded_ids: tuple[int, ...] = ()
    # Test builds still running in a lane a newer push arrived in: (build id, newer sha).
    running_superseded: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery as intake stores it."""

    id: str
    event: str
    hook_id: str | None
    received_at: float
    outcome: str
    requests: Sequence[BuildRequest] = ()
    hook_repository: str | None = None
    stop_running: bool = False


@dataclass(frozen=True)
class RecoveredBuild:
    id: int
    requeued: bool
    # The attempt that was lost (its processes carry this number); not part of its identity.
    attempt: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Rerun:
    """A re-run asked for by a person: the new build's id, or why there is none."""

    build_id: int | None
    refused: str | None = None


@dataclass(frozen=True)
class Hook:
    repository: str
    hook_id: str
    checked_until: float


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Hook ids already written, so intake does not rewrite the same row per delivery.
        self._hooks_seen: dict[str, str] = {}
        # Whether the last write transaction failed for want of space (or I/O): /health says so.
        self.write_failing = False
        self.write_failures = 0  # how many have, ever: deliveries refused meanwhile to catch up
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        schema = resources.files("runner.store").joinpath("schema.sql").read_text("utf-8")
        code = "\n".join(line.split("--", 1)[0] for line in schema.splitlines())
        with self._transaction() as db:
            for statement in code.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as error:
            # Also when COMMIT itself failed (disk full): never stay inside a transaction.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._hooks_seen.clear()  # it may remember a hook id that was rolled back
            if is_unavailable(error):
                self.write_failing = True
                self.write_failures += 1
            raise
        self.write_failing = False

    def probe_write(self) -> None:
        """One small write, to learn whether the store can write again."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO leases (name, owner, expires) VALUES ('store-probe', '', ?)"
                " ON CONFLICT (name) DO UPDATE SET expires = excluded.expires",
                (time.time(),),
            )

    def transact(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run `function(db, ...)` as one transaction (the registry's functions use this)."""
        with self._transaction() as db:
            return function(db, *args, **kwargs)

    # -- intake ------------------------------------------------------------------------------

    def record_deliveries(
        self, deliveries: Sequence[Delivery]
    ) -> list[DeliveryOutcome | Exception]:
        """Persist several deliveries in one transaction: one fsync for all (group commit).

        Each delivery is its own savepoint, so one that fails leaves the others committed.
        """
        answers: list[DeliveryOutcome | Exception] = []
        with self._transaction() as db:
            if len(deliveries) == 1:  # alone in its transaction: it needs no savepoint
                return [self._record(db, deliveries[0])]
            for delivery in deliveries:
                db.execute("SAVEPOINT delivery")
                try:
                    answers.append(self._record(db, delivery))
                except Exception as error:  # answered to that delivery's request alone
                    db.execute("ROLLBACK TO delivery")
                    answers.append(error)
                db.execute("RELEASE delivery")
        return answers

    def record_delivery(
        self,
        *,
        delivery_id: str,
        event: str,
        hook_id: str | None,
        received_at: float,
        outcome: str,
        requests: Sequence[BuildRequest],
        hook_repository: str | None = None,
        stop_running: bool = False,
    ) -> DeliveryOutcome:
        delivery = Delivery(
            delivery_id,
            event,
            hook_id,
            received_at,
            outcome,
            requests,
            hook_repository,
            stop_running,
        )
        answer = self.record_deliveries([delivery])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _record(self, db: sqlite3.Connection, delivery: Delivery) -> DeliveryOutcome:
        """A delivery and the builds it asks for; a known delivery id changes nothing.

        Queued builds the new ones make pointless are superseded; with `stop_running`, running
        test builds of the same lane are asked to stop (their owner's heartbeat reads it).
        """
        delivery_id, hook_id, requests = delivery.id, delivery.hook_id, delivery.requests
        received_at, hook_repository = delivery.received_at, delivery.hook_repository
        inserted = db.execute(
            "INSERT INTO deliveries (id, event, hook_id, received_at, outcome) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (delivery_id, delivery.event, hook_id, received_at, delivery.outcome),
        ).rowcount
        if not inserted:
            return DeliveryOutcome(duplicate=True)
        if hook_id and hook_repository and self._hooks_seen.get(hook_repository) != hook_id:
            self._hooks_seen[hook_repository] = hook_id
            db.execute(
                "INSERT INTO hooks (repository, hook_id) VALUES (?, ?) ON CONFLICT"
                " (repository) DO UPDATE SET hook_id = excluded.hook_id",
                (hook_repository, hook_id),
            )
        build_ids: list[int] = []
        superseded: list[int] = []
        running: list[tuple[int, str]] = []
        now = time.time()
        for request in requests:
            later = self._pushed_later(db, request)
            waiting = () if later else self._facts(db, request.repository, "queued")
            busy = () if later or not delivery.stop_running else self._running_tests(db, request)
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
            build_id = self._insert_build(
                db, request, delivery_id, received_at, None, arrival.not_before
            )
            build_ids.append(build_id)
            if arrival.born_superseded_by is not None:
                # An old push arriving late (a redelivery): it would supersede the branch's head.
                reason = statuses.superseded_by(arrival.born_superseded_by)
                end_queued(db, self._row(db, build_id), reason, heard=False)
                continue
            self._supersede(db, arrival.supersede)
            superseded += [ended.build_id for ended in arrival.supersede]
            running += [(build_id, request.sha) for build_id, _ in arrival.stop_running]
        return DeliveryOutcome(False, tuple(build_ids), tuple(superseded), tuple(running))

    def _insert_build(
        self,
        db: sqlite3.Connection,
        request: BuildRequest,
        delivery_id: str | None,
        received_at: float,
        parent_id: int | None,
        not_before: float | None = None,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO builds (delivery_id, parent_id, repository, job, sha, ref, branch,"
            " pull_request, from_fork, deploy_after_test, message, author, state, description,"
            " received_at, queued_at, not_before, pushed_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
                BuildState.QUEUED.value,
                "Queued",
                received_at,
                time.time(),
                not_before,
                request.pushed_at,
            ),
        )
        build_id = cursor.lastrowid
        assert build_id is not None
        outbox.enqueue(db, build_id, request, statuses.queued(request.job))
        return build_id

    def _pushed_later(self, db: sqlite3.Connection, request: BuildRequest) -> str | None:
        """The sha of a build in `request`'s lane pushed after it, if GitHub says so."""
        if request.pushed_at is None:
            return None
        row = db.execute(
            "SELECT sha FROM builds WHERE repository = ? AND ref = ? AND job = ?"
            " AND pushed_at > ? ORDER BY pushed_at DESC LIMIT 1",
            (request.repository, request.ref, request.job.value, request.pushed_at),
        ).fetchone()
        return None if row is None else str(row["sha"])

    def _row(self, db: sqlite3.Connection, build_id: int) -> sqlite3.Row:
        row: sqlite3.Row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return row

    def _facts(
        self, db: sqlite3.Connection, repository: str, state: str, job: Job | None = None
    ) -> list[rules.BuildFacts]:
        """The repository's builds in `state` (of `job`), as the rules see them."""
        query = (
            "SELECT b.*, EXISTS (SELECT 1 FROM outbox AS o WHERE o.build_id = b.id"
            " AND o.outcome IN ('sent', 'sending')) AS heard FROM builds AS b"
            " WHERE b.state = ? AND b.repository = ?"
        )
        arguments: tuple[object, ...] = (state, repository)
        if job is not None:
            query += " AND b.job = ?"
            arguments += (job.value,)
        return [facts_of(row) for row in db.execute(query, arguments)]

    def _running_tests(
        self, db: sqlite3.Connection, request: BuildRequest
    ) -> list[rules.BuildFacts]:
        if request.job is not Job.TEST:
            return []
        return self._facts(db, request.repository, "running", Job.TEST)

    def _supersede(self, db: sqlite3.Connection, ended: Iterable[rules.Supersede]) -> None:
        for supersede in ended:
            end_queued(
                db, self._row(db, supersede.build_id), supersede.reason, supersede.tell_github
            )

    # -- scheduling --------------------------------------------------------------------------

    def claim_builds(self, limit: int, owner: str, lease_seconds: float) -> list[Build]:
        """Lease up to `limit` queued builds to `owner`: the oldest of each idle repository.

        A build still settling (`not_before` in the future) holds its repository's queue.
        """
        if limit <= 0:
            return []
        with self._transaction() as db:
            now = time.time()
            # The oldest queued build of each repository: the only ones that may start.
            heads = [
                facts_of(row)
                for row in db.execute(
                    "SELECT b.*, 0 AS heard FROM builds AS b WHERE b.state = 'queued'"
                    " AND b.id = (SELECT MIN(q.id) FROM builds AS q"
                    "             WHERE q.repository = b.repository AND q.state = 'queued')"
                )
            ]
            busy = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT repository FROM builds WHERE state = 'running'"
                )
            ]
            deployed = [
                later
                for head in heads
                if head.job is Job.DEPLOY
                for later in self._deploys_maybe_later(db, head)
            ]
            decision = rules.claim(heads, busy, deployed, limit=limit, now=now)
            for supersede in decision.supersede:
                end_queued(db, self._row(db, supersede.build_id), supersede.reason)
            for build_id in decision.start:
                row = self._row(db, build_id)
                running = statuses.running(Job(row["job"]))
                db.execute(
                    "UPDATE builds SET state = 'running', description = ?, started_at = ?,"
                    " finished_at = NULL, exit_code = NULL, attempt = attempt + 1,"
                    " lease_owner = ?, lease_expires = ?, stop_reason = NULL"
                    " WHERE id = ? AND state = 'queued'",
                    (running.description, now, owner, now + lease_seconds, build_id),
                )
                outbox.enqueue(db, build_id, _request(row), running)
            return [self._build(db, build_id) for build_id in decision.start]

    def settling_until(self) -> float | None:
        """When the earliest settling build becomes claimable, if any build is settling."""
        row = self._db.execute(
            "SELECT MIN(not_before) FROM builds WHERE state = 'queued' AND not_before > ?",
            (time.time(),),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _deploys_maybe_later(
        self, db: sqlite3.Connection, build: rules.BuildFacts
    ) -> list[rules.BuildFacts]:
        """Successful deploys of `build`'s repository that may have been pushed after it (the
        rules decide which were)."""
        rows = db.execute(
            "SELECT *, 0 AS heard FROM builds WHERE repository = ? AND job = 'deploy'"
            " AND state = 'success' AND (pushed_at > ? OR id > ?)",
            (build.repository, build.request.pushed_at, build.id),
        )
        return [facts_of(row) for row in rows]

    def heartbeat(
        self, owner: str, build_ids: Iterable[int], lease_seconds: float
    ) -> dict[int, str | None]:
        """Renew the leases of `owner`'s running builds; returns each one's stop request.

        A build missing from the answer is no longer this owner's (its lease lapsed and another
        daemon recovered it): the caller stops it without reporting.
        """
        ids = list(build_ids)
        if not ids:
            return {}
        with self._transaction() as db:
            expires = time.time() + lease_seconds
            answer: dict[int, str | None] = {}
            for build_id in ids:
                row = db.execute(
                    "UPDATE builds SET lease_expires = ? WHERE id = ? AND state = 'running'"
                    " AND lease_owner = ? RETURNING stop_reason",
                    (expires, build_id, owner),
                ).fetchone()
                if row is not None:
                    answer[build_id] = row["stop_reason"]
            return answer

    def finish_build(
        self, build_id: int, status: Status, exit_code: int | None, owner: str
    ) -> int | None:
        """Record a build's final state; returns the id of the deploy it unlocks, if any.

        Only the lease's owner may finish a build: a daemon that lost its lease (it stalled and
        another recovered the build) changes nothing.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM builds WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (build_id, owner),
            ).fetchone()
            if row is None:
                return None
            state = BuildState(status.state.value)
            _end(db, build_id, state, status.description, exit_code)
            outbox.enqueue(db, build_id, _request(row), status)
            deploy = rules.deploy_after(facts_of(row), state)
            if deploy is None:
                return None
            deploy_id = self._insert_build(db, deploy, row["delivery_id"], time.time(), build_id)
            waiting = self._facts(db, deploy.repository, "queued", Job.DEPLOY)
            self._supersede(db, rules.superseded_by_deploy(deploy_id, deploy, waiting))
            return deploy_id

    def set_commit_info(self, build_id: int, message: str, author: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE builds SET message = ?, author = ? WHERE id = ?",
                (message, author, build_id),
            )

    def recover_interrupted(
        self, is_gone: Callable[[str | None], bool] = lambda _owner: True, now: float | None = None
    ) -> list[RecoveredBuild]:
        """Recover running builds whose owner is gone (`is_gone`) or whose lease lapsed."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM builds WHERE state = 'running'").fetchall()
            lost = [
                row
                for row in rows
                if is_gone(row["lease_owner"])
                or row["lease_expires"] is None
                or row["lease_expires"] < now
            ]
            return [self._recover(db, row) for row in lost]

    def release(self, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]:
        """A daemon gives up builds it could not finish (drain timeout): recover them now."""
        with self._transaction() as db:
            recovered = []
            for build_id in build_ids:
                row = db.execute(
                    "SELECT * FROM builds WHERE id = ? AND state = 'running' AND lease_owner = ?",
                    (build_id, owner),
                ).fetchone()
                if row is not None:
                    recovered.append(self._recover(db, row))
            return recovered

    def _recover(self, db: sqlite3.Connection, row: sqlite3.Row) -> RecoveredBuild:
        """The rule for a build whose daemon went away mid-run.

        A test runs once more (keeping its id and page, posting `pending` again), unless a newer
        queued push already supersedes it, or it was already re-run once (a build that kills
        its daemon must not loop). A deploy may have half-happened, so running it again blindly
        could do harm: it ends `error` and a person re-runs it.
        """
        request = _request(row)
        waiting = self._facts(db, request.repository, "queued", request.job)
        recovery = rules.recover(facts_of(row), waiting)
        if recovery.requeue:
            db.execute(
                "UPDATE builds SET state = 'queued', description = 'Queued', lease_owner = NULL,"
                " lease_expires = NULL, stop_reason = NULL WHERE id = ?",
                (row["id"],),
            )
            outbox.enqueue(db, row["id"], request, statuses.queued(request.job))
            return RecoveredBuild(row["id"], requeued=True, attempt=row["attempt"])
        reason = recovery.reason or rules.INTERRUPTED
        _end(db, row["id"], BuildState.ERROR, reason, None)
        outbox.enqueue(db, row["id"], request, statuses.errored(reason))
        return RecoveredBuild(row["id"], requeued=False, attempt=row["attempt"])

    def running_owners(self) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT lease_owner FROM builds WHERE state = 'running'"
        ).fetchall()
        return {row[0] for row in rows if row[0]}

    # -- what people ask for (runner.scheduling.control) ---------------------------------

    def cancel_build(self, build_id: int, reason: str) -> BuildState | None:
        """Cancel a build; returns the state it was in (None: no such build).

        A queued build ends `error` at once (GitHub hears why, unless it never heard of the
        build: then its waiting states are dropped, as for a superseded one). A running one is
        asked to stop, like a superseded running build: its daemon's heartbeat reads the
        request, and the build ends with `reason` as its status. Final builds stay as they are.
        """
        with self._transaction() as db:
            row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row is None:
                return None
            state = BuildState(row["state"])
            if state is BuildState.QUEUED:
                end_queued(db, row, reason)
            elif state is BuildState.RUNNING:
                db.execute(
                    "UPDATE builds SET stop_reason = ? WHERE id = ? AND stop_reason IS NULL",
                    (reason, build_id),
                )
            return state

    def rerun_build(self, build_id: int) -> Rerun:
        """Queue a finished build's commit again, as a new build of the same lane.

        A test runs again as it did, deploying after it if it was headed for a deploy; a deploy
        runs its tests again with the deploy after them, so every deploy still follows green
        tests of its own commit. Neither supersedes anything: the person asked for this commit.
        Deploys still never go backwards: re-running a deploy is refused while a later push
        of the repository is deployed or on its way to be (its deploy queued, running or done,
        or its tests queued or running with a deploy after them); a test re-run then just tests.
        """
        with self._transaction() as db:
            row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row is None:
                return Rerun(None, "no such build")
            later = db.execute(
                "SELECT *, 0 AS heard FROM builds WHERE repository = ? AND sha != ?"
                " AND state IN ('queued', 'running', 'success')"
                " AND (pushed_at > ? OR id > ?)",
                (row["repository"], row["sha"], row["pushed_at"], row["id"]),
            )
            plan = rules.rerun(facts_of(row), [facts_of(other) for other in later])
            if plan.request is None:
                return Rerun(None, plan.refused)
            return Rerun(self._insert_build(db, plan.request, None, time.time(), None))

    # -- leases on named work ----------------------------------------------------------------

    def acquire_lease(
        self,
        name: str,
        owner: str,
        seconds: float,
        is_gone: Callable[[str | None], bool] = lambda _owner: False,
    ) -> bool:
        """Take or renew the lease `name`; False while another live owner holds it unexpired.

        A holder known to be gone (`is_gone`: it died on this host) loses the lease at once, so
        a restarted daemon does not wait out its predecessor's lease.
        """
        with self._transaction() as db:
            now = time.time()
            row = db.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
            held_by_another = row is not None and row["owner"] != owner and row["expires"] >= now
            if held_by_another and not is_gone(row["owner"]):
                return False
            db.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
                (name, owner, now + seconds),
            )
            return True

    def pause(self, name: str, until: float) -> None:
        """Record that `name` (posting to GitHub) waits until `until`, for every daemon."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, 'pause', ?) ON CONFLICT"
                " (name) DO UPDATE SET expires = MAX(leases.expires, excluded.expires)",
                (name, until),
            )

    def paused_until(self, name: str) -> float:
        row = self._db.execute("SELECT expires FROM leases WHERE name = ?", (name,)).fetchone()
        return 0.0 if row is None else float(row[0])

    def drop_lease(self, name: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # -- reading -----------------------------------------------------------------------------

    def get_build(self, build_id: int) -> Build | None:
        row = self._db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return None if row is None else build_of(row)

    def _build(self, db: sqlite3.Connection, build_id: int) -> Build:
        return build_of(db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone())

    def get_builds(self, build_ids: Iterable[int]) -> dict[int, Build]:
        ids = list(build_ids)
        return {row["id"]: build_of(row) for row in listing.by_ids(self._db, ids)} if ids else {}

    # -- what the pages list (runner.store.listing) ------------------------------------------

    def repositories_with_builds(self) -> list[str]:
        return listing.repositories(self._db)

    def latest_per_lane(self, repository: str, limit: int) -> list[Build]:
        return [build_of(row) for row in listing.latest_per_lane(self._db, repository, limit)]

    def active_builds(self, limit: int) -> list[Build]:
        return [build_of(row) for row in listing.active(self._db, limit)]

    def list_builds(
        self,
        repository: str,
        *,
        branch: str | None = None,
        state: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Build]:
        rows = listing.page(
            self._db, repository, branch=branch, state=state, before=before, limit=limit
        )
        return [build_of(row) for row in rows]

    def latest_test_build(self, repository: str, branch: str) -> Build | None:
        row = listing.latest_test(self._db, repository, branch)
        return None if row is None else build_of(row)

    def latest_build_of_sha(self, repository: str, sha: str) -> Build | None:
        row = listing.latest_of_sha(self._db, repository, sha)
        return None if row is None else build_of(row)

    def deploy_branch_seen(self, repository: str) -> str | None:
        return listing.deploy_branch(self._db, repository)

    def state_counts(self) -> dict[str, int]:
        """How many builds are queued and running (over every daemon sharing the store)."""
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM builds WHERE state IN ('queued', 'running') GROUP BY state"
        ).fetchall()
        return {"queued": 0, "running": 0} | {row[0]: int(row[1]) for row in rows}

    def queued_count(self) -> int:
        return self.state_counts()["queued"]

    # -- outbox ------------------------------------------------------------------------------

    def next_status(self, now: float) -> tuple[OutboxItem | None, float | None]:
        with self._transaction() as db:
            return outbox.next_item(db, now)

    def status_done(self, item_id: int, outcome: str) -> None:
        with self._transaction() as db:
            outbox.mark(db, item_id, outcome)

    def status_retry(self, item_id: int, next_attempt_at: float) -> None:
        with self._transaction() as db:
            outbox.retry(db, item_id, next_attempt_at)

    def pending_status_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL").fetchone()
        return int(row[0])

    # -- catching up on missed deliveries ----------------------------------------------------

    def hooks(self) -> list[Hook]:
        rows = self._db.execute("SELECT * FROM hooks ORDER BY repository").fetchall()
        return [Hook(row["repository"], row["hook_id"], row["checked_until"]) for row in rows]

    def set_hook_checked(self, repository: str, until: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE hooks SET checked_until = MAX(checked_until, ?) WHERE repository = ?",
                (until, repository),
            )

    def known_deliveries(self, delivery_ids: Iterable[str]) -> set[str]:
        known: set[str] = set()
        for delivery_id in delivery_ids:
            row = self._db.execute("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,))
            if row.fetchone() is not None:
                known.add(delivery_id)
        return known

    # -- retention ---------------------------------------------------------------------------

    def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]:
        """Delete finished builds past retention, with their statuses; returns their ids.

        Deliveries are kept as long as builds (and at least as long as GitHub may redeliver),
        since their ids are what makes redelivery safe.
        """
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id FROM (SELECT id, state, finished_at, ROW_NUMBER() OVER"
                " (PARTITION BY repository ORDER BY id DESC) AS newer FROM builds)"
                " WHERE state IN ('success', 'failure', 'error')"
                " AND (finished_at < ? OR newer > ?)",
                (older_than, keep_per_repository),
            ).fetchall()
            ids = sorted(row["id"] for row in rows)
            pruned = [(build_id,) for build_id in ids]
            db.executemany("DELETE FROM outbox WHERE done_at IS NOT NULL AND build_id = ?", pruned)
            db.executemany("DELETE FROM builds WHERE id = ?", pruned)
            # GitHub redelivers for three days: their ids must stay known at least that long.
            db.execute(
                "DELETE FROM deliveries WHERE received_at < ? AND id NOT IN"
                " (SELECT delivery_id FROM builds WHERE delivery_id IS NOT NULL)",
                (min(older_than, time.time() - GITHUB_REDELIVERY_SECONDS),),
            )
        self._db.execute("PRAGMA incremental_vacuum")
        return ids

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def end_queued(
    db: sqlite3.Connection, row: sqlite3.Row, description: str, heard: bool | None = None
) -> None:
    """End a queued build as `error`; GitHub hears why only if it heard of the build before.

    `heard` None: look it up now (callers whose query did not answer it already).
    """
    _end(db, row["id"], BuildState.ERROR, description, None)
    if heard is None:
        heard = not outbox.forget_unannounced(db, row["id"])
    elif not heard:
        outbox.drop_waiting(db, row["id"])
    if heard:
        outbox.enqueue(db, row["id"], _request(row), statuses.errored(description))


def _end(
    db: sqlite3.Connection,
    build_id: int,
    state: BuildState,
    description: str,
    exit_code: int | None,
) -> None:
    db.execute(
        "UPDATE builds SET state = ?, description = ?, exit_code = ?, finished_at = ?,"
        " lease_owner = NULL, lease_expires = NULL WHERE id = ?",
        (state.value, statuses.truncate(description), exit_code, time.time(), build_id),
    )


def _request(row: sqlite3.Row) -> BuildRequest:
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
    )


def build_of(row: sqlite3.Row) -> Build:
    return Build(
        id=row["id"],
        request=_request(row),
        state=BuildState(row["state"]),
        description=row["description"],
        delivery_id=row["delivery_id"],
        received_at=row["received_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempt=row["attempt"],
        exit_code=row["exit_code"],
    )


def facts_of(row: sqlite3.Row) -> rules.BuildFacts:
    """A row as the queue's rules see it; `heard` only where the query asked for it."""
    return rules.BuildFacts(
        id=row["id"],
        request=_request(row),
        state=BuildState(row["state"]),
        attempt=row["attempt"],
        not_before=row["not_before"],
        # sqlite3.Row: `in` looks at the values; the keys are the columns.
        heard=bool(row["heard"]) if "heard" in row.keys() else False,  # noqa: SIM118
    )
