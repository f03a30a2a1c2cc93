"""The SQLite store: synchronous, transactional, used from one thread only (see `runner.store`).

Each public method is one transaction. Commits are durable before they return
(WAL with `synchronous=FULL` fsyncs the log on every commit), which is what lets intake answer
2xx only after a delivery is safe.
"""

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from runner import statuses
from runner.models import Build, BuildRequest, BuildState, Job
from runner.statuses import Status, StatusState


@dataclass(frozen=True)
class DeliveryOutcome:
    duplicate: bool
    build_ids: tuple[int, ...] = ()
    superseded_ids: tuple[int, ...] = ()
    # Test builds still running in a lane a newer push arrived in: (build id, newer sha).
    running_superseded: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class OutboxItem:
    id: int
    build_id: int
    repository: str
    sha: str
    context: str
    status: Status
    attempts: int


@dataclass(frozen=True)
class RecoveredBuild:
    id: int
    requeued: bool


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA foreign_keys=ON")
        schema = resources.files("runner.store").joinpath("schema.sql").read_text("utf-8")
        self._db.executescript(schema)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- intake ------------------------------------------------------------------------------

    def record_delivery(
        self,
        *,
        delivery_id: str,
        event: str,
        hook_id: str | None,
        received_at: float,
        outcome: str,
        requests: Sequence[BuildRequest],
    ) -> DeliveryOutcome:
        """Persist a delivery and the builds it asks for; a known delivery id changes nothing."""
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO deliveries (id, event, hook_id, received_at, outcome) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (delivery_id, event, hook_id, received_at, outcome),
            ).rowcount
            if not inserted:
                return DeliveryOutcome(duplicate=True)
            build_ids: list[int] = []
            superseded: list[int] = []
            running: list[tuple[int, str]] = []
            for request in requests:
                build_id = self._insert_build(db, request, delivery_id, received_at, None)
                build_ids.append(build_id)
                superseded += self._supersede_queued(db, request, build_id)
                if request.job is Job.TEST:
                    rows = db.execute(
                        "SELECT id FROM builds WHERE repository = ? AND ref = ? AND job = 'test'"
                        " AND state = 'running' AND id < ?",
                        (request.repository, request.ref, build_id),
                    ).fetchall()
                    running += [(row["id"], request.sha) for row in rows]
            return DeliveryOutcome(False, tuple(build_ids), tuple(superseded), tuple(running))

    def _insert_build(
        self,
        db: sqlite3.Connection,
        request: BuildRequest,
        delivery_id: str | None,
        received_at: float,
        parent_id: int | None,
    ) -> int:
        now = time.time()
        cursor = db.execute(
            "INSERT INTO builds (delivery_id, parent_id, repository, job, sha, ref, branch,"
            " pull_request, from_fork, deploy_after_test, message, author, state, description,"
            " received_at, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                now,
            ),
        )
        build_id = cursor.lastrowid
        assert build_id is not None
        self._enqueue_status(db, build_id, request, statuses.queued(request.job))
        return build_id

    def _supersede_queued(
        self, db: sqlite3.Connection, newer: BuildRequest, newer_id: int
    ) -> list[int]:
        """End the queued builds that `newer` makes pointless.

        Tests: the same repository, ref and job. Deploys: any older queued deploy of the
        repository, since deploying an older commit after a newer one would go backwards.
        """
        if newer.job is Job.DEPLOY:
            rows = db.execute(
                "SELECT * FROM builds WHERE repository = ? AND job = ? AND state = ? AND id < ?",
                (newer.repository, Job.DEPLOY.value, BuildState.QUEUED.value, newer_id),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT * FROM builds WHERE repository = ? AND ref = ? AND job = ? AND state = ?"
                " AND id < ?",
                (newer.repository, newer.ref, newer.job.value, BuildState.QUEUED.value, newer_id),
            ).fetchall()
        description = statuses.superseded_by(newer.sha)
        for row in rows:
            self._end(db, row["id"], BuildState.ERROR, description, None)
            self._enqueue_status(
                db, row["id"], _request(row), statuses.errored(description), only_if_announced=True
            )
        return [row["id"] for row in rows]

    # -- scheduling --------------------------------------------------------------------------

    def claim_builds(self, limit: int) -> list[Build]:
        """Mark up to `limit` queued builds running: the oldest of each idle repository."""
        if limit <= 0:
            return []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM builds AS b WHERE b.state = 'queued'"
                " AND b.id = (SELECT MIN(q.id) FROM builds AS q"
                "             WHERE q.repository = b.repository AND q.state = 'queued')"
                " AND NOT EXISTS (SELECT 1 FROM builds AS r"
                "                 WHERE r.repository = b.repository AND r.state = 'running')"
                " ORDER BY b.id LIMIT ?",
                (limit,),
            ).fetchall()
            now = time.time()
            claimed = []
            for row in rows:
                if row["job"] == Job.DEPLOY and self._deployed_newer(db, row):
                    continue
                db.execute(
                    "UPDATE builds SET state = 'running', description = ?, started_at = ?,"
                    " finished_at = NULL, exit_code = NULL, attempt = attempt + 1 WHERE id = ?",
                    (statuses.running(Job(row["job"])).description, now, row["id"]),
                )
                self._enqueue_status(
                    db, row["id"], _request(row), statuses.running(Job(row["job"]))
                )
                claimed.append(row["id"])
            return [self._build(db, build_id) for build_id in claimed]

    def _deployed_newer(self, db: sqlite3.Connection, row: sqlite3.Row) -> bool:
        """End a deploy that would go backwards: a later deploy already succeeded."""
        newer = db.execute(
            "SELECT sha FROM builds WHERE repository = ? AND job = 'deploy' AND state = 'success'"
            " AND id > ? ORDER BY id DESC LIMIT 1",
            (row["repository"], row["id"]),
        ).fetchone()
        if newer is None:
            return False
        description = statuses.superseded_by(newer["sha"])
        self._end(db, row["id"], BuildState.ERROR, description, None)
        self._enqueue_status(
            db, row["id"], _request(row), statuses.errored(description), only_if_announced=True
        )
        return True

    def finish_build(self, build_id: int, status: Status, exit_code: int | None) -> int | None:
        """Record a build's final state; returns the id of the deploy it unlocks, if any."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row is None or BuildState(row["state"]).is_final:
                return None
            state = BuildState(status.state.value)
            self._end(db, build_id, state, status.description, exit_code)
            request = _request(row)
            self._enqueue_status(db, build_id, request, status)
            if not (state is BuildState.SUCCESS and request.job is Job.TEST):
                return None
            if not request.deploy_after_test or request.from_fork:
                return None
            deploy = BuildRequest(
                repository=request.repository,
                sha=request.sha,
                ref=request.ref,
                branch=request.branch,
                job=Job.DEPLOY,
                message=request.message,
                author=request.author,
            )
            deploy_id = self._insert_build(db, deploy, row["delivery_id"], time.time(), build_id)
            self._supersede_queued(db, deploy, deploy_id)
            return deploy_id

    def set_commit_info(self, build_id: int, message: str, author: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE builds SET message = ?, author = ? WHERE id = ?",
                (message, author, build_id),
            )

    def recover_interrupted(self) -> list[RecoveredBuild]:
        """Builds left `running` by a daemon that died: tests run once more, deploys do not.

        A deploy may have half-happened; running it again blindly could do harm, so it ends
        `error` and a person re-runs it. A test that was already re-run once also ends `error`,
        so a build that kills the daemon cannot loop forever.
        """
        recovered = []
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM builds WHERE state = 'running'").fetchall()
            for row in rows:
                request = _request(row)
                newer = db.execute(
                    "SELECT sha FROM builds WHERE repository = ? AND ref = ? AND job = ?"
                    " AND state = 'queued' AND id > ? ORDER BY id DESC LIMIT 1",
                    (request.repository, request.ref, request.job.value, row["id"]),
                ).fetchone()
                if request.job is Job.TEST and newer is not None:
                    reason = statuses.superseded_by(newer["sha"])
                    self._end(db, row["id"], BuildState.ERROR, reason, None)
                    self._enqueue_status(db, row["id"], request, statuses.errored(reason))
                    recovered.append(RecoveredBuild(row["id"], requeued=False))
                elif request.job is Job.TEST and row["attempt"] < 2:
                    db.execute(
                        "UPDATE builds SET state = 'queued', description = 'Queued' WHERE id = ?",
                        (row["id"],),
                    )
                    self._enqueue_status(db, row["id"], request, statuses.queued(request.job))
                    recovered.append(RecoveredBuild(row["id"], requeued=True))
                else:
                    reason = "Interrupted: daemon restarted"
                    self._end(db, row["id"], BuildState.ERROR, reason, None)
                    self._enqueue_status(db, row["id"], request, statuses.errored(reason))
                    recovered.append(RecoveredBuild(row["id"], requeued=False))
        return recovered

    # -- reading -----------------------------------------------------------------------------

    def get_build(self, build_id: int) -> Build | None:
        row = self._db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        return None if row is None else _build_of(row)

    def _build(self, db: sqlite3.Connection, build_id: int) -> Build:
        return _build_of(db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone())

    def queued_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM builds WHERE state = 'queued'").fetchone()
        return int(row[0])

    # -- outbox ------------------------------------------------------------------------------

    def _enqueue_status(
        self,
        db: sqlite3.Connection,
        build_id: int,
        request: BuildRequest,
        status: Status,
        *,
        only_if_announced: bool = False,
    ) -> None:
        db.execute(
            "INSERT INTO outbox (build_id, repository, sha, context, state, description,"
            " only_if_announced, created_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                build_id,
                request.repository,
                request.sha,
                request.job.context,
                status.state.value,
                status.description,
                only_if_announced,
                time.time(),
            ),
        )

    def next_status(self, now: float) -> tuple[OutboxItem | None, float | None]:
        """The next status to post, or None and when to look again (None: when woken).

        For one commit and context only the newest waiting state is worth sending: older ones are
        marked `collapsed`. A superseded build's state is `dropped` when GitHub never heard of it.
        """
        with self._transaction() as db:
            while True:
                row = db.execute(
                    "SELECT * FROM outbox WHERE done_at IS NULL"
                    " ORDER BY next_attempt_at, id LIMIT 1"
                ).fetchone()
                if row is None:
                    return None, None
                if row["next_attempt_at"] > now:
                    return None, float(row["next_attempt_at"])
                newest = db.execute(
                    "SELECT * FROM outbox WHERE done_at IS NULL AND repository = ? AND sha = ?"
                    " AND context = ? ORDER BY id DESC LIMIT 1",
                    (row["repository"], row["sha"], row["context"]),
                ).fetchone()
                if newest["only_if_announced"] and not self._announced(db, newest):
                    # GitHub never heard of this build: it ends silently. Only its own older
                    # states go with it; another build of the same commit still reports.
                    db.execute(
                        "UPDATE outbox SET done_at = ?, outcome = 'collapsed' WHERE done_at IS NULL"
                        " AND build_id = ? AND context = ? AND id < ?",
                        (now, newest["build_id"], newest["context"], newest["id"]),
                    )
                    db.execute(
                        "UPDATE outbox SET done_at = ?, outcome = 'dropped' WHERE id = ?",
                        (now, newest["id"]),
                    )
                    continue
                db.execute(
                    "UPDATE outbox SET done_at = ?, outcome = 'collapsed' WHERE done_at IS NULL"
                    " AND repository = ? AND sha = ? AND context = ? AND id < ?",
                    (now, row["repository"], row["sha"], row["context"], newest["id"]),
                )
                return _outbox_item(newest), None

    def _announced(self, db: sqlite3.Connection, row: sqlite3.Row) -> bool:
        """Whether a state of this build has been posted (so GitHub shows it as pending)."""
        sent = db.execute(
            "SELECT 1 FROM outbox WHERE build_id = ? AND context = ? AND outcome = 'sent' LIMIT 1",
            (row["build_id"], row["context"]),
        ).fetchone()
        return sent is not None

    def status_done(self, item_id: int, outcome: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET done_at = ?, outcome = ? WHERE id = ?",
                (time.time(), outcome, item_id),
            )

    def status_retry(self, item_id: int, next_attempt_at: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                (next_attempt_at, item_id),
            )

    def pending_status_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL").fetchone()
        return int(row[0])

    def _end(
        self,
        db: sqlite3.Connection,
        build_id: int,
        state: BuildState,
        description: str,
        exit_code: int | None,
    ) -> None:
        db.execute(
            "UPDATE builds SET state = ?, description = ?, exit_code = ?, finished_at = ?"
            " WHERE id = ?",
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
    )


def _build_of(row: sqlite3.Row) -> Build:
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


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        build_id=row["build_id"],
        repository=row["repository"],
        sha=row["sha"],
        context=row["context"],
        status=Status(StatusState(row["state"]), row["description"]),
        attempts=row["attempts"],
    )
