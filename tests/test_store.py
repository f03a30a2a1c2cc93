"""`SQLiteStore` on a real SQLite file: deliveries, superseding, claiming, the outbox, recovery."""

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState, Job
from runner.core.statuses import Status, StatusState
from runner.store.sqlite import Delivery, OutboxItem, RecoveredBuild, SQLiteStore

REPO = "octo/app"
# The reporter's clock, an hour ahead: every held `pending` state is due by then.
NOW = time.time() + 3600
INTERRUPTED = "Interrupted: daemon restarted"

OWNER = "test-host/1/owner"
LEASE = 30.0


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()  # noqa: S324 - a commit id, not security


def request(
    n: int,
    *,
    repository: str = REPO,
    branch: str = "main",
    job: Job = Job.TEST,
    deploy_after_test: bool = False,
    from_fork: bool = False,
    pull_request: int | None = None,
) -> BuildRequest:
    ref = f"refs/pull/{pull_request}/head" if pull_request else f"refs/heads/{branch}"
    return BuildRequest(
        repository=repository,
        sha=sha(n),
        ref=ref,
        branch=branch,
        job=job,
        pull_request=pull_request,
        from_fork=from_fork,
        deploy_after_test=deploy_after_test,
        message=f"commit {n}",
        author="octocat",
    )


def deliver(store: SQLiteStore, delivery: str, *requests: BuildRequest) -> tuple[int, ...]:
    outcome = store.record_delivery(
        delivery_id=delivery,
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=list(requests),
    )
    assert not outcome.duplicate
    return outcome.build_ids


def query(path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the file through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, args).fetchall()


def outbox(path: Path, build_id: int) -> list[tuple[str, str, str | None]]:
    rows = query(
        path,
        "SELECT state, description, outcome FROM outbox WHERE build_id = ? ORDER BY id",
        build_id,
    )
    return [(row["state"], row["description"], row["outcome"]) for row in rows]


def state(store: SQLiteStore, build_id: int) -> tuple[BuildState, str]:
    build = store.get_build(build_id)
    assert build is not None
    return build.state, build.description


def drain(store: SQLiteStore, now: float = NOW) -> list[OutboxItem]:
    """Every status the reporter would post now, each marked sent."""
    sent: list[OutboxItem] = []
    while True:
        item, retry_at = store.next_status(now)
        if item is None:
            assert retry_at is None
            return sent
        sent.append(item)
        store.status_done(item.id, "sent")


def assert_integrity(path: Path) -> None:
    assert [tuple(row) for row in query(path, "PRAGMA integrity_check")] == [("ok",)]
    assert query(path, "PRAGMA foreign_key_check") == []


SUCCESS = statuses.succeeded(Job.TEST, 1.5)
FAILURE = statuses.failed(Job.TEST, 2, 1.5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "hobotnica.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()
    assert_integrity(path)


# -- deliveries ----------------------------------------------------------------------------------


def test_record_delivery_persists_builds_and_a_queued_status_each(
    store: SQLiteStore, path: Path
) -> None:
    ids = deliver(store, "d-1", request(1), request(2, branch="feature"))
    assert len(ids) == 2
    assert store.queued_count() == 2
    for n, build_id in zip((1, 2), ids, strict=True):
        build = store.get_build(build_id)
        assert build is not None
        assert build.request == request(n, branch="main" if n == 1 else "feature")
        assert (build.state, build.description) == (BuildState.QUEUED, "Queued")
        assert build.delivery_id == "d-1"
        assert build.received_at == NOW
        assert build.attempt == 0
        assert build.started_at is None and build.finished_at is None
        assert outbox(path, build_id) == [("pending", "Queued", None)]
        [row] = query(path, "SELECT * FROM outbox WHERE build_id = ?", build_id)
        assert (row["repository"], row["sha"], row["context"]) == (REPO, sha(n), "hobotnica/test")
        assert row["done_at"] is None
    [delivery] = query(path, "SELECT * FROM deliveries")
    assert (delivery["id"], delivery["event"], delivery["hook_id"]) == ("d-1", "push", "42")
    assert store.pending_status_count() == 2


def test_a_delivery_without_builds_is_recorded(store: SQLiteStore, path: Path) -> None:
    outcome = store.record_delivery(
        delivery_id="d-ignored",
        event="issues",
        hook_id=None,
        received_at=NOW,
        outcome="ignored: event",
        requests=[],
    )
    assert (outcome.duplicate, outcome.build_ids, outcome.superseded_ids) == (False, (), ())
    assert [row["outcome"] for row in query(path, "SELECT * FROM deliveries")] == ["ignored: event"]
    assert query(path, "SELECT * FROM builds") == []


def test_duplicate_delivery_creates_nothing_even_after_a_restart(path: Path) -> None:
    store = SQLiteStore(path)
    [first] = deliver(store, "d-1", request(1))
    again = store.record_delivery(
        delivery_id="d-1",
        event="push",
        hook_id="42",
        received_at=NOW + 5,
        outcome="accepted",
        requests=[request(1), request(2)],
    )
    assert again.duplicate
    assert again.build_ids == () and again.superseded_ids == ()
    store.close()

    reopened = SQLiteStore(path)
    try:
        build = reopened.get_build(first)
        assert build is not None and build.state is BuildState.QUEUED
        after_restart = reopened.record_delivery(
            delivery_id="d-1",
            event="push",
            hook_id="42",
            received_at=NOW + 10,
            outcome="accepted",
            requests=[request(3)],
        )
        assert after_restart.duplicate
        assert after_restart.build_ids == ()
        assert len(query(path, "SELECT * FROM builds")) == 1
        assert len(query(path, "SELECT * FROM outbox")) == 1
        assert len(query(path, "SELECT * FROM deliveries")) == 1
        assert reopened.queued_count() == 1
        # a new delivery id still works on the reopened file
        [second] = deliver(reopened, "d-2", request(4, branch="other"))
        assert second > first
    finally:
        reopened.close()
    assert_integrity(path)


# -- superseding ---------------------------------------------------------------------------------


def test_newer_push_supersedes_older_queued_tests_of_the_same_branch_only(
    store: SQLiteStore, path: Path
) -> None:
    [old_main] = deliver(store, "d-1", request(1))
    [older_main] = deliver(store, "d-2", request(2))  # supersedes old_main already
    [feature] = deliver(store, "d-3", request(3, branch="feature"))
    [pr] = deliver(store, "d-4", request(4, branch="main", pull_request=7))
    [other_repo] = deliver(store, "d-5", request(5, repository="octo/other"))
    assert state(store, old_main) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")

    outcome = store.record_delivery(
        delivery_id="d-6",
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=[request(6)],
    )
    [newest] = outcome.build_ids
    assert outcome.superseded_ids == (older_main,)
    assert state(store, older_main) == (BuildState.ERROR, f"Superseded by {sha(6)[:7]}")
    older = store.get_build(older_main)
    assert older is not None and older.finished_at is not None
    for untouched in (feature, pr, other_repo, newest):
        assert state(store, untouched) == (BuildState.QUEUED, "Queued")
    # GitHub never heard of it, so it gets no status at all: decided at once, in this transaction.
    assert outbox(path, older_main) == [("pending", "Queued", "dropped")]


def sqlite_steps(store: SQLiteStore, action: Callable[[], object]) -> int:
    """SQLite VM instructions `action` costs on the store's connection: a count, not a time."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._db.set_progress_handler(count, 1)
    try:
        action()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def test_a_push_costs_the_same_however_long_its_branchs_history(store: SQLiteStore) -> None:
    """Intake must not scan a lane's history: S3 (2,000 pushes to one branch) went quadratic."""

    def pushes(numbers: range) -> list[Delivery]:
        return [
            Delivery(f"d-{n}", "push", "42", NOW, "accepted", [push_request(n)]) for n in numbers
        ]

    def push_request(n: int) -> BuildRequest:
        return replace(request(n), pushed_at=1_700_000_000.0 + n)  # GitHub's push order

    def cost_of_next_push(n: int) -> int:
        return sqlite_steps(store, lambda: deliver(store, f"d-{n}", push_request(n)))

    store.record_deliveries(pushes(range(20)))
    short_history = cost_of_next_push(20)
    store.record_deliveries(pushes(range(21, 1000)))  # one transaction: a burst's group commit
    long_history = cost_of_next_push(1000)
    assert long_history < short_history * 1.5, (short_history, long_history)


def pushed(n: int, at: float, **kw: Any) -> BuildRequest:
    """A push GitHub made at `at` (`repository.pushed_at`): redeliveries keep that time."""
    return replace(request(n, **kw), pushed_at=at)


def test_a_late_redelivery_of_an_older_push_never_supersedes_the_branchs_head(
    store: SQLiteStore, path: Path
) -> None:
    """GitHub redelivers push 1 after push 2 arrived: push 2 is the branch's head and builds."""
    [head] = deliver(store, "d-2", pushed(2, 1_700_000_002.0))
    [other_branch] = deliver(store, "d-9", pushed(9, 1_700_000_009.0, branch="feature"))

    [late] = deliver(store, "d-1", pushed(1, 1_700_000_001.0))

    assert state(store, head) == (BuildState.QUEUED, "Queued")
    assert state(store, late) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    assert state(store, other_branch) == (BuildState.QUEUED, "Queued")  # a newer push elsewhere
    assert outbox(path, late) == [("pending", "Queued", "dropped")]  # GitHub never hears of it
    assert [build.id for build in store.claim_builds(5, OWNER, LEASE)] == [head]
    # A push that really is newer still supersedes the head.
    [newest] = deliver(store, "d-3", pushed(3, 1_700_000_003.0))
    assert state(store, head) == (BuildState.ERROR, f"Superseded by {sha(3)[:7]}") or state(
        store, head
    ) == (BuildState.RUNNING, "Running make test")
    assert state(store, newest) == (BuildState.QUEUED, "Queued")


def test_running_builds_are_not_superseded(store: SQLiteStore) -> None:
    [running] = deliver(store, "d-1", request(1))
    [claimed] = store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == running
    [queued] = deliver(store, "d-2", request(2))
    outcome = store.record_delivery(
        delivery_id="d-3",
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=[request(3)],
    )
    assert outcome.superseded_ids == (queued,)
    assert state(store, running) == (BuildState.RUNNING, "Running make test")
    assert state(store, queued)[0] is BuildState.ERROR


# -- claiming ------------------------------------------------------------------------------------


def test_claim_runs_one_build_per_repository_in_arrival_order(store: SQLiteStore) -> None:
    [a1] = deliver(store, "d-1", request(1, repository="octo/a"))
    [a2] = deliver(store, "d-2", request(2, repository="octo/a", branch="feature"))
    [b1] = deliver(store, "d-3", request(3, repository="octo/b"))
    [c1] = deliver(store, "d-4", request(4, repository="octo/c"))
    [b2] = deliver(store, "d-5", request(5, repository="octo/b", branch="feature"))

    assert store.claim_builds(0, OWNER, LEASE) == []
    first = store.claim_builds(2, OWNER, LEASE)
    assert [build.id for build in first] == [a1, b1]
    for build in first:
        assert build.state is BuildState.RUNNING
        assert build.attempt == 1
        assert build.started_at is not None
        assert build.description == "Running make test"

    # a and b are busy: only c may start, however many slots there are
    assert [build.id for build in store.claim_builds(5, OWNER, LEASE)] == [c1]
    assert store.claim_builds(5, OWNER, LEASE) == []
    assert store.queued_count() == 2

    assert store.finish_build(b1, SUCCESS, 0, OWNER) is None
    assert [build.id for build in store.claim_builds(5, OWNER, LEASE)] == [b2]
    assert store.finish_build(a1, FAILURE, 2, OWNER) is None
    [next_a] = store.claim_builds(5, OWNER, LEASE)
    assert (next_a.id, next_a.attempt) == (a2, 1)
    assert store.claim_builds(5, OWNER, LEASE) == []
    assert store.queued_count() == 0


def test_claim_posts_a_running_status(store: SQLiteStore, path: Path) -> None:
    [build_id] = deliver(store, "d-1", request(1))
    store.claim_builds(1, OWNER, LEASE)
    assert outbox(path, build_id) == [
        ("pending", "Queued", None),
        ("pending", "Running make test", None),
    ]


# -- finishing and deploys -----------------------------------------------------------------------


def test_green_test_with_deploy_after_test_queues_a_deploy(store: SQLiteStore, path: Path) -> None:
    [test_id] = deliver(store, "d-1", request(1, deploy_after_test=True))
    store.claim_builds(1, OWNER, LEASE)
    deploy_id = store.finish_build(test_id, SUCCESS, 0, OWNER)
    assert deploy_id is not None and deploy_id != test_id

    test = store.get_build(test_id)
    assert test is not None
    assert (test.state, test.description, test.exit_code) == (
        BuildState.SUCCESS,
        SUCCESS.description,
        0,
    )
    assert test.finished_at is not None
    deploy = store.get_build(deploy_id)
    assert deploy is not None
    assert deploy.job is Job.DEPLOY
    assert (deploy.sha, deploy.request.ref, deploy.repository) == (sha(1), "refs/heads/main", REPO)
    assert (deploy.state, deploy.attempt) == (BuildState.QUEUED, 0)
    assert not deploy.request.from_fork
    [row] = query(path, "SELECT parent_id FROM builds WHERE id = ?", deploy_id)
    assert row["parent_id"] == test_id
    assert outbox(path, deploy_id) == [("pending", "Queued", None)]
    [ctx] = query(path, "SELECT DISTINCT context FROM outbox WHERE build_id = ?", deploy_id)
    assert ctx["context"] == "hobotnica/deploy"
    assert outbox(path, test_id)[-1] == ("success", SUCCESS.description, None)

    # finishing again changes nothing and unlocks nothing
    assert store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert len(query(path, "SELECT * FROM builds WHERE job = 'deploy'")) == 1

    [claimed] = store.claim_builds(1, OWNER, LEASE)
    assert (claimed.id, claimed.job) == (deploy_id, Job.DEPLOY)
    assert store.finish_build(deploy_id, statuses.succeeded(Job.DEPLOY, 3.0), 0, OWNER) is None


@pytest.mark.parametrize(
    "status",
    [FAILURE, statuses.errored("Timed out after 3600 s")],
    ids=["failure", "error"],
)
def test_a_test_that_is_not_green_queues_no_deploy(
    store: SQLiteStore, path: Path, status: Status
) -> None:
    [test_id] = deliver(store, "d-1", request(1, deploy_after_test=True))
    store.claim_builds(1, OWNER, LEASE)
    exit_code = 2 if status.state is StatusState.FAILURE else None
    assert store.finish_build(test_id, status, exit_code, OWNER) is None
    assert state(store, test_id) == (BuildState(status.state.value), status.description)
    assert query(path, "SELECT * FROM builds WHERE job = 'deploy'") == []


def test_a_green_test_without_deploy_after_test_queues_no_deploy(
    store: SQLiteStore, path: Path
) -> None:
    [test_id] = deliver(store, "d-1", request(1))
    store.claim_builds(1, OWNER, LEASE)
    assert store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert query(path, "SELECT * FROM builds WHERE job = 'deploy'") == []


def test_a_fork_never_gets_a_deploy(store: SQLiteStore, path: Path) -> None:
    fork = request(1, deploy_after_test=True, from_fork=True, pull_request=3)
    [test_id] = deliver(store, "d-1", fork)
    store.claim_builds(1, OWNER, LEASE)
    assert store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert state(store, test_id)[0] is BuildState.SUCCESS
    assert query(path, "SELECT * FROM builds WHERE job = 'deploy'") == []


def test_a_newer_deploy_supersedes_an_older_queued_deploy(store: SQLiteStore, path: Path) -> None:
    [t1] = deliver(store, "d-1", request(1, deploy_after_test=True))
    store.claim_builds(1, OWNER, LEASE)
    [t2] = deliver(store, "d-2", request(2, deploy_after_test=True))  # t1 runs: not superseded
    d1 = store.finish_build(t1, SUCCESS, 0, OWNER)
    assert d1 is not None
    [claimed] = store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == t2  # FIFO per repository: the test that arrived first runs first
    d2 = store.finish_build(t2, SUCCESS, 0, OWNER)
    assert d2 is not None and d2 > d1
    assert state(store, d1) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    assert state(store, d2) == (BuildState.QUEUED, "Queued")
    assert outbox(path, d1) == [("pending", "Queued", "dropped")]  # never announced: no status
    [next_build] = store.claim_builds(1, OWNER, LEASE)
    assert next_build.id == d2


def test_a_deploy_of_another_repository_is_not_superseded(store: SQLiteStore) -> None:
    [ta] = deliver(store, "d-1", request(1, deploy_after_test=True))
    [tb] = deliver(store, "d-2", request(2, repository="octo/b", deploy_after_test=True))
    store.claim_builds(2, OWNER, LEASE)
    da = store.finish_build(ta, SUCCESS, 0, OWNER)
    db = store.finish_build(tb, SUCCESS, 0, OWNER)
    assert da is not None and db is not None
    assert state(store, da)[0] is BuildState.QUEUED
    assert state(store, db)[0] is BuildState.QUEUED


# -- the outbox ----------------------------------------------------------------------------------


def test_only_the_newest_waiting_status_per_commit_and_context_is_sent(
    store: SQLiteStore, path: Path
) -> None:
    [build_id] = deliver(store, "d-1", request(1))
    store.claim_builds(1, OWNER, LEASE)
    [item] = drain(store)
    assert item.build_id == build_id
    assert (item.repository, item.sha, item.context) == (REPO, sha(1), "hobotnica/test")
    assert item.status == Status(StatusState.PENDING, "Running make test")
    assert item.attempts == 0
    assert outbox(path, build_id) == [
        ("pending", "Queued", "collapsed"),
        ("pending", "Running make test", "sent"),
    ]
    store.finish_build(build_id, SUCCESS, 0, OWNER)
    [final] = drain(store)
    assert final.status == SUCCESS
    assert drain(store) == []
    assert store.next_status(NOW) == (None, None)
    assert store.pending_status_count() == 0


def test_statuses_of_different_contexts_and_commits_do_not_collapse(store: SQLiteStore) -> None:
    [t1] = deliver(store, "d-1", request(1, deploy_after_test=True))
    [t2] = deliver(store, "d-2", request(2, branch="feature"))
    store.claim_builds(1, OWNER, LEASE)
    deploy_id = store.finish_build(t1, SUCCESS, 0, OWNER)
    assert deploy_id is not None
    sent = drain(store)
    assert {(item.build_id, item.status.state, item.status.description) for item in sent} == {
        (t1, StatusState.SUCCESS, SUCCESS.description),
        (t2, StatusState.PENDING, "Queued"),
        (deploy_id, StatusState.PENDING, "Queued"),
    }
    assert {item.context for item in sent if item.build_id == deploy_id} == {"hobotnica/deploy"}


def test_superseded_build_never_announced_gets_no_status(store: SQLiteStore, path: Path) -> None:
    [old] = deliver(store, "d-1", request(1))
    [new] = deliver(store, "d-2", request(2))
    sent = drain(store)
    assert [(item.build_id, item.sha, item.status) for item in sent] == [
        (new, sha(2), statuses.queued(Job.TEST))
    ]
    assert outbox(path, old) == [("pending", "Queued", "dropped")]
    assert query(path, "SELECT * FROM outbox WHERE sha = ? AND outcome = 'sent'", sha(1)) == []
    assert store.pending_status_count() == 0


def test_superseded_build_already_announced_gets_its_error(store: SQLiteStore, path: Path) -> None:
    [old] = deliver(store, "d-1", request(1))
    item, _ = store.next_status(NOW)
    assert item is not None and item.build_id == old
    store.status_done(item.id, "sent")

    [new] = deliver(store, "d-2", request(2))
    sent = drain(store)
    assert sorted((item.build_id, item.status) for item in sent) == [
        (old, Status(StatusState.ERROR, f"Superseded by {sha(2)[:7]}")),
        (new, statuses.queued(Job.TEST)),
    ]
    assert outbox(path, old) == [
        ("pending", "Queued", "sent"),
        ("error", f"Superseded by {sha(2)[:7]}", "sent"),
    ]


def test_a_build_superseded_while_its_pending_is_in_flight_gets_its_error(
    store: SQLiteStore, path: Path
) -> None:
    """The reporter is posting "Queued" when a newer push supersedes the build: GitHub will
    have heard of it, so it must hear how it ended, or the commit stays `pending` for ever."""
    [old] = deliver(store, "d-1", request(1))
    in_flight, _ = store.next_status(NOW)
    assert in_flight is not None and in_flight.build_id == old

    [new] = deliver(store, "d-2", request(2))
    store.status_done(in_flight.id, "sent")  # GitHub answers the post in flight

    assert state(store, old) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    sent = drain(store)
    assert sorted((item.build_id, item.status) for item in sent) == [
        (old, Status(StatusState.ERROR, f"Superseded by {sha(2)[:7]}")),
        (new, statuses.queued(Job.TEST)),
    ]
    assert outbox(path, old) == [
        ("pending", "Queued", "sent"),
        ("error", f"Superseded by {sha(2)[:7]}", "sent"),
    ]


def test_status_retry_waits_until_its_time(store: SQLiteStore) -> None:
    [build_id] = deliver(store, "d-1", request(1))
    item, retry_at = store.next_status(NOW)
    assert item is not None and retry_at is None
    store.status_retry(item.id, NOW + 60)

    assert store.next_status(NOW) == (None, NOW + 60)
    assert store.next_status(NOW + 59.9) == (None, NOW + 60)
    again, retry_at = store.next_status(NOW + 60)
    assert again is not None and retry_at is None
    assert (again.id, again.build_id, again.attempts) == (item.id, build_id, 1)
    store.status_retry(again.id, NOW + 180)
    assert store.next_status(NOW + 61) == (None, NOW + 180)
    store.status_done(again.id, "sent")
    assert store.next_status(NOW + 1000) == (None, None)


def test_a_retried_status_is_replaced_by_a_newer_one(store: SQLiteStore, path: Path) -> None:
    [build_id] = deliver(store, "d-1", request(1))
    item, _ = store.next_status(NOW)
    assert item is not None
    store.status_retry(item.id, NOW + 600)
    store.claim_builds(1, OWNER, LEASE)
    newer, retry_at = store.next_status(NOW)
    assert newer is not None and retry_at is None
    assert newer.status.description == "Running make test"
    store.status_done(newer.id, "sent")
    assert store.next_status(NOW + 600) == (None, None)
    assert outbox(path, build_id)[0] == ("pending", "Queued", "collapsed")


# -- recovery after a crash ----------------------------------------------------------------------


def test_an_interrupted_test_is_requeued_once_then_ends_in_error(path: Path) -> None:
    store = SQLiteStore(path)
    [build_id] = deliver(store, "d-1", request(1))
    [claimed] = store.claim_builds(1, OWNER, LEASE)
    assert claimed.attempt == 1
    store.close()  # the daemon dies with the build running

    store = SQLiteStore(path)
    assert store.recover_interrupted() == [RecoveredBuild(build_id, requeued=True)]
    assert state(store, build_id) == (BuildState.QUEUED, "Queued")
    assert outbox(path, build_id) == [
        ("pending", "Queued", None),
        ("pending", "Running make test", None),
        ("pending", "Queued", None),
    ]
    assert store.recover_interrupted() == []  # nothing is running any more
    [again] = store.claim_builds(1, OWNER, LEASE)
    assert (again.id, again.attempt) == (build_id, 2)
    store.close()  # and dies again

    store = SQLiteStore(path)
    try:
        assert store.recover_interrupted() == [RecoveredBuild(build_id, requeued=False)]
        build = store.get_build(build_id)
        assert build is not None
        assert (build.state, build.description) == (BuildState.ERROR, INTERRUPTED)
        assert build.finished_at is not None
        assert store.claim_builds(1, OWNER, LEASE) == []
        [final] = drain(store)
        assert (final.build_id, final.status) == (build_id, statuses.errored(INTERRUPTED))
    finally:
        store.close()
    assert_integrity(path)


def test_an_interrupted_deploy_ends_in_error_at_once(path: Path) -> None:
    store = SQLiteStore(path)
    [test_id] = deliver(store, "d-1", request(1, deploy_after_test=True))
    [queued_test] = deliver(store, "d-2", request(2, repository="octo/other"))
    store.claim_builds(1, OWNER, LEASE)
    deploy_id = store.finish_build(test_id, SUCCESS, 0, OWNER)
    assert deploy_id is not None
    [other, deploy] = store.claim_builds(
        2, OWNER, LEASE
    )  # arrival order: the other test came first
    assert (deploy.id, deploy.job, deploy.attempt) == (deploy_id, Job.DEPLOY, 1)
    assert other.id == queued_test
    store.close()

    store = SQLiteStore(path)
    try:
        recovered = store.recover_interrupted()
        assert sorted(recovered, key=lambda r: r.id) == [
            RecoveredBuild(queued_test, requeued=True),
            RecoveredBuild(deploy_id, requeued=False),
        ]
        assert state(store, deploy_id) == (BuildState.ERROR, INTERRUPTED)
        assert outbox(path, deploy_id)[-1] == ("error", INTERRUPTED, None)
        sent = {item.build_id: item for item in drain(store)}
        assert sent[deploy_id].status == statuses.errored(INTERRUPTED)
        assert sent[deploy_id].context == "hobotnica/deploy"
        assert sent[queued_test].status == statuses.queued(Job.TEST)
        assert [b.id for b in store.claim_builds(5, OWNER, LEASE)] == [queued_test]
    finally:
        store.close()
    assert_integrity(path)


def test_a_dropped_superseded_error_does_not_swallow_another_builds_final_status(
    store: SQLiteStore, path: Path
) -> None:
    """One commit, two lanes: the push to `feature` and the pull request from it.

    The push build finishes green before the reporter posted anything for the commit; then a new
    push to the pull request supersedes the pull request's queued build of the same commit. The
    push build was not superseded, so its `success` must still reach GitHub.
    """
    [push] = deliver(store, "d-1", request(1, branch="feature"))
    [pr] = deliver(store, "d-2", request(1, branch="feature", pull_request=5))
    [claimed] = store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == push
    store.finish_build(push, SUCCESS, 0, OWNER)
    [newer_pr] = deliver(store, "d-3", request(2, branch="feature", pull_request=5))
    assert state(store, pr) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")

    sent = drain(store)
    assert (push, SUCCESS) in [(item.build_id, item.status) for item in sent]
    assert (newer_pr, statuses.queued(Job.TEST)) in [(item.build_id, item.status) for item in sent]
    assert outbox(path, push)[-1] == ("success", SUCCESS.description, "sent")


def test_a_held_pending_of_another_build_does_not_swallow_a_final_state(
    store: SQLiteStore, path: Path
) -> None:
    # Build A (a push) finishes while build B (a pull request of the same commit) has just been
    # queued; B is then superseded before GitHub heard of it. A's success must still be posted,
    # or the commit would keep showing A's old "Running" for ever.
    [a] = deliver(store, "d-1", request(1))
    store.claim_builds(1, OWNER, LEASE)
    drain(store)  # GitHub shows A running
    store.finish_build(a, SUCCESS, 0, OWNER)
    [b] = deliver(store, "d-2", request(1, branch="feature", pull_request=7))  # held pending

    item, _ = store.next_status(time.time())
    assert item is not None and (item.build_id, item.status) == (a, SUCCESS)
    store.status_done(item.id, "sent")
    deliver(store, "d-3", request(2, branch="feature", pull_request=7))  # supersedes B

    assert state(store, b) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    sent_for_commit = [i for i in drain(store) if i.sha == sha(1)]
    assert sent_for_commit == []  # nothing of B: the commit's last state stays A's success


def test_no_commit_gets_more_statuses_than_github_keeps(store: SQLiteStore, path: Path) -> None:
    [build_id] = deliver(store, "d-1", request(1))
    # 995 statuses already sent for this commit and context (a very busy sha).
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO outbox (build_id, repository, sha, context, state, description,"
            " created_at, done_at, outcome) VALUES (?, ?, ?, 'hobotnica/test', 'pending', 'x',"
            " 0, 0, 'sent')",
            [(build_id, REPO, sha(1))] * 995,
        )
    store.claim_builds(1, OWNER, LEASE)  # a pending "Running" state: past 990, not sent
    assert drain(store) == []
    store.finish_build(build_id, SUCCESS, 0, OWNER)  # the final state still goes out
    assert [item.status for item in drain(store)] == [SUCCESS]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO outbox (build_id, repository, sha, context, state, description,"
            " created_at, done_at, outcome) VALUES (?, ?, ?, 'hobotnica/test', 'error', 'x',"
            " 0, 0, 'sent')",
            [(build_id, REPO, sha(1))] * 10,
        )
    [again] = deliver(store, "d-2", request(1, branch="other"))
    store.claim_builds(1, OWNER, LEASE)
    store.finish_build(again, SUCCESS, 0, OWNER)
    assert drain(store) == []  # 1000 reached: nothing more for this commit and context
