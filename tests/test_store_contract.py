"""The store's contract: what every backend does, seen through the `Store` interface alone.

Each test runs once per backend (`tests/support/stores.py: BACKENDS`), on fresh storage; a
backend is done when this module passes on it. What only one backend can show (its files, its
rows, its costs) is in that backend's own module (`tests/test_sqlite_store.py`).
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState, Job
from runner.core.statuses import Status, StatusState
from runner.scheduling import rules
from runner.scheduling.control import CANCELLED
from runner.store import (
    Delivery,
    RecoveredBuild,
    RegisteredRepository,
    Registration,
    Store,
    Variables,
)
from tests.support.stores import (
    BACKENDS,
    FAILURE,
    LEASE,
    NOW,
    OWNER,
    REPO,
    SUCCESS,
    Backend,
    deliver,
    drain,
    everyone_gone,
    nobody_gone,
    post_one,
    record_delivery,
    request,
    run_to_end,
    sha,
    state,
)

INTERRUPTED = "Interrupted: daemon restarted"


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


async def queued_count(store: Store) -> int:
    return (await store.state_counts())["queued"]


async def deploys_of(store: Store, repository: str = REPO) -> list[int]:
    return [build.id for build in await store.list_builds(repository) if build.job is Job.DEPLOY]


# -- deliveries ----------------------------------------------------------------------------------


async def test_record_delivery_persists_builds_and_a_queued_status_each(store: Store) -> None:
    ids = await deliver(store, "d-1", request(1), request(2, branch="feature"))
    assert len(ids) == 2
    assert await queued_count(store) == 2
    for n, build_id in zip((1, 2), ids, strict=True):
        build = await store.get_build(build_id)
        assert build is not None
        assert build.request == request(n, branch="main" if n == 1 else "feature")
        assert (build.state, build.description) == (BuildState.QUEUED, "Queued")
        assert build.delivery_id == "d-1"
        assert build.received_at == NOW
        assert build.attempt == 0
        assert build.started_at is None and build.finished_at is None
    assert await store.known_deliveries(["d-1", "d-2"]) == {"d-1"}
    assert await store.pending_status_count() == 2
    # Each build's one waiting state: `pending` "Queued", for its own commit, in its context.
    sent = await drain(store)
    assert sorted((i.build_id, i.repository, i.sha, i.context, i.status) for i in sent) == [
        (ids[0], REPO, sha(1), "hobotnica/test", statuses.queued(Job.TEST)),
        (ids[1], REPO, sha(2), "hobotnica/test", statuses.queued(Job.TEST)),
    ]
    assert [item.attempts for item in sent] == [0, 0]
    assert await store.pending_status_count() == 0


async def test_a_delivery_without_builds_is_recorded(store: Store) -> None:
    outcome = await record_delivery(
        store,
        delivery_id="d-ignored",
        event="issues",
        hook_id=None,
        received_at=NOW,
        outcome="ignored: event",
        requests=[],
    )
    assert (outcome.duplicate, outcome.build_ids, outcome.superseded_ids) == (False, (), ())
    assert await store.known_deliveries(["d-ignored", "d-other"]) == {"d-ignored"}
    assert await store.repositories_with_builds() == []
    assert await store.pending_status_count() == 0
    again = await record_delivery(
        store,
        delivery_id="d-ignored",
        event="issues",
        hook_id=None,
        received_at=NOW,
        outcome="ignored: event",
    )
    assert again.duplicate


async def test_duplicate_delivery_creates_nothing_even_after_a_restart(
    backend: Backend, store: Store
) -> None:
    [first] = await deliver(store, "d-1", request(1))
    again = await record_delivery(
        store,
        delivery_id="d-1",
        event="push",
        hook_id="42",
        received_at=NOW + 5,
        outcome="accepted",
        requests=[request(1), request(2)],
    )
    assert again.duplicate
    assert again.build_ids == () and again.superseded_ids == ()

    reopened = await backend.restart(store)
    build = await reopened.get_build(first)
    assert build is not None and build.state is BuildState.QUEUED
    after_restart = await record_delivery(
        reopened,
        delivery_id="d-1",
        event="push",
        hook_id="42",
        received_at=NOW + 10,
        outcome="accepted",
        requests=[request(3)],
    )
    assert after_restart.duplicate
    assert after_restart.build_ids == ()
    # One build, one status, one delivery: the duplicates left nothing behind.
    assert await reopened.repositories_with_builds() == [REPO]
    assert [build.id for build in await reopened.list_builds(REPO)] == [first]
    assert await reopened.pending_status_count() == 1
    assert await reopened.known_deliveries(["d-1", "d-2"]) == {"d-1"}
    assert await queued_count(reopened) == 1
    # a new delivery id still works on the reopened storage
    [second] = await deliver(reopened, "d-2", request(4, branch="other"))
    assert second > first


async def test_hooks_are_remembered_per_repository_with_how_far_they_were_checked(
    store: Store,
) -> None:
    async def delivery(delivery_id: str, hook_id: str, repository: str) -> None:
        await record_delivery(
            store,
            delivery_id=delivery_id,
            event="push",
            hook_id=hook_id,
            received_at=NOW,
            outcome="accepted",
            hook_repository=repository,
        )

    assert await store.hooks() == []
    await delivery("d-1", "42", "octo/b")
    await delivery("d-2", "7", "octo/a")
    await store.set_hook_checked("octo/a", 100.0)
    await store.set_hook_checked("octo/a", 50.0)  # an older check never moves it back
    await store.set_hook_checked("octo/unknown", 100.0)  # no hook seen: nothing to remember
    assert [(h.repository, h.hook_id, h.checked_until) for h in await store.hooks()] == [
        ("octo/a", "7", 100.0),
        ("octo/b", "42", 0.0),
    ]
    # The repository's hook was replaced on GitHub: its deliveries now name another.
    await delivery("d-3", "8", "octo/a")
    assert [(h.repository, h.hook_id) for h in await store.hooks()] == [
        ("octo/a", "8"),
        ("octo/b", "42"),
    ]


# -- superseding ---------------------------------------------------------------------------------


async def test_newer_push_supersedes_older_queued_tests_of_the_same_branch_only(
    store: Store,
) -> None:
    [old_main] = await deliver(store, "d-1", request(1))
    [older_main] = await deliver(store, "d-2", request(2))  # supersedes old_main already
    [feature] = await deliver(store, "d-3", request(3, branch="feature"))
    [pr] = await deliver(store, "d-4", request(4, branch="main", pull_request=7))
    [other_repo] = await deliver(store, "d-5", request(5, repository="octo/other"))
    assert await state(store, old_main) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")

    outcome = await record_delivery(
        store,
        delivery_id="d-6",
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=[request(6)],
    )
    [newest] = outcome.build_ids
    assert outcome.superseded_ids == (older_main,)
    assert await state(store, older_main) == (BuildState.ERROR, f"Superseded by {sha(6)[:7]}")
    older = await store.get_build(older_main)
    assert older is not None and older.finished_at is not None
    for untouched in (feature, pr, other_repo, newest):
        assert await state(store, untouched) == (BuildState.QUEUED, "Queued")
    # GitHub never heard of the superseded ones, so they get no status at all: decided at once,
    # in the delivery's own transaction (only the four queued builds' states still wait).
    assert await store.pending_status_count() == 4
    assert sorted(item.build_id for item in await drain(store)) == sorted(
        [feature, pr, other_repo, newest]
    )


def pushed(n: int, at: float, **kw: Any) -> BuildRequest:
    """A push GitHub made at `at` (`repository.pushed_at`): redeliveries keep that time."""
    return replace(request(n, **kw), pushed_at=at)


async def test_a_late_redelivery_of_an_older_push_never_supersedes_the_branchs_head(
    store: Store,
) -> None:
    """GitHub redelivers push 1 after push 2 arrived: push 2 is the branch's head and builds."""
    [head] = await deliver(store, "d-2", pushed(2, 1_700_000_002.0))
    [other_branch] = await deliver(store, "d-9", pushed(9, 1_700_000_009.0, branch="feature"))

    [late] = await deliver(store, "d-1", pushed(1, 1_700_000_001.0))

    assert await state(store, head) == (BuildState.QUEUED, "Queued")
    assert await state(store, late) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    assert await state(store, other_branch) == (BuildState.QUEUED, "Queued")  # newer elsewhere
    assert await store.pending_status_count() == 2  # GitHub never hears of the late one
    assert [build.id for build in await store.claim_builds(5, OWNER, LEASE)] == [head]
    # A push that really is newer still supersedes the head.
    [newest] = await deliver(store, "d-3", pushed(3, 1_700_000_003.0))
    assert await state(store, head) == (
        BuildState.ERROR,
        f"Superseded by {sha(3)[:7]}",
    ) or await state(store, head) == (BuildState.RUNNING, "Running make test")
    assert await state(store, newest) == (BuildState.QUEUED, "Queued")
    assert late not in {item.build_id for item in await drain(store)}


async def test_running_builds_are_not_superseded(store: Store) -> None:
    [running] = await deliver(store, "d-1", request(1))
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == running
    [queued] = await deliver(store, "d-2", request(2))
    outcome = await record_delivery(
        store,
        delivery_id="d-3",
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=[request(3)],
    )
    assert outcome.superseded_ids == (queued,)
    assert await state(store, running) == (BuildState.RUNNING, "Running make test")
    assert (await state(store, queued))[0] is BuildState.ERROR


def push(delivery_id: str, *requests: BuildRequest, stop_running: bool = False) -> Delivery:
    return Delivery(delivery_id, "push", "42", NOW, "accepted", requests, stop_running=stop_running)


async def test_a_newer_push_asks_a_running_test_of_its_lane_to_stop_when_told_to(
    store: Store,
) -> None:
    [running] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    [other_lane] = await deliver(store, "d-2", request(2, branch="feature"))

    outcome = await store.record_delivery(push("d-3", request(3), stop_running=True))
    assert outcome.running_superseded == ((running, sha(3)),)
    stop = f"Superseded by {sha(3)[:7]}"
    assert await store.heartbeat(OWNER, [running], LEASE) == {running: stop}
    # Without being told to, a newer push leaves running builds alone.
    await store.finish_build(running, SUCCESS, 0, OWNER)
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == other_lane
    calm = await store.record_delivery(push("d-4", request(4, branch="feature")))
    assert calm.running_superseded == ()
    assert await store.heartbeat(OWNER, [other_lane], LEASE) == {other_lane: None}


async def test_a_burst_of_pushes_settles_before_its_newest_starts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push that superseded another waits `rules.SETTLE_SECONDS` (long here) before it may
    start, in case more of the burst is coming; a lone push does not wait."""
    monkeypatch.setattr(rules, "SETTLE_SECONDS", 3600.0)
    assert await store.settling_until() is None
    [lone] = await deliver(store, "d-0", request(10, repository="octo/b"))
    assert await store.settling_until() is None
    await deliver(store, "d-1", request(1))
    [newest] = await deliver(store, "d-2", request(2))  # supersedes the first: settles

    settles = await store.settling_until()
    assert settles is not None and settles > time.time() + 3000
    assert [build.id for build in await store.claim_builds(5, OWNER, LEASE)] == [lone]
    assert await state(store, newest) == (BuildState.QUEUED, "Queued")


# -- claiming ------------------------------------------------------------------------------------


async def test_claim_runs_one_build_per_repository_in_arrival_order(store: Store) -> None:
    [a1] = await deliver(store, "d-1", request(1, repository="octo/a"))
    [a2] = await deliver(store, "d-2", request(2, repository="octo/a", branch="feature"))
    [b1] = await deliver(store, "d-3", request(3, repository="octo/b"))
    [c1] = await deliver(store, "d-4", request(4, repository="octo/c"))
    [b2] = await deliver(store, "d-5", request(5, repository="octo/b", branch="feature"))

    assert await store.claim_builds(0, OWNER, LEASE) == []
    first = await store.claim_builds(2, OWNER, LEASE)
    assert [build.id for build in first] == [a1, b1]
    for build in first:
        assert build.state is BuildState.RUNNING
        assert build.attempt == 1
        assert build.started_at is not None
        assert build.description == "Running make test"

    # a and b are busy: only c may start, however many slots there are
    assert [build.id for build in await store.claim_builds(5, OWNER, LEASE)] == [c1]
    assert await store.claim_builds(5, OWNER, LEASE) == []
    assert await queued_count(store) == 2

    assert await store.finish_build(b1, SUCCESS, 0, OWNER) is None
    assert [build.id for build in await store.claim_builds(5, OWNER, LEASE)] == [b2]
    assert await store.finish_build(a1, FAILURE, 2, OWNER) is None
    [next_a] = await store.claim_builds(5, OWNER, LEASE)
    assert (next_a.id, next_a.attempt) == (a2, 1)
    assert await store.claim_builds(5, OWNER, LEASE) == []
    assert await queued_count(store) == 0


async def test_claim_posts_a_running_status(store: Store) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    # Two states wait for the commit, "Queued" and then "Running": GitHub gets the newer.
    assert await store.pending_status_count() == 2
    assert [(item.build_id, item.status) for item in await drain(store)] == [
        (build_id, statuses.running(Job.TEST))
    ]


# -- running builds: leases, heartbeats, results -------------------------------------------------


async def test_only_the_owner_of_a_running_build_renews_its_lease_and_finishes_it(
    store: Store,
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)

    assert await store.heartbeat(OWNER, [build_id, 999], LEASE) == {build_id: None}
    assert await store.heartbeat("another-daemon", [build_id], LEASE) == {}
    assert await store.heartbeat(OWNER, [], LEASE) == {}
    assert await store.finish_build(build_id, FAILURE, 2, "another-daemon") is None
    assert await state(store, build_id) == (BuildState.RUNNING, "Running make test")

    assert await store.finish_build(build_id, FAILURE, 2, OWNER) is None
    build = await store.get_build(build_id)
    assert build is not None
    assert (build.state, build.description, build.exit_code) == (
        BuildState.FAILURE,
        FAILURE.description,
        2,
    )
    assert await store.heartbeat(OWNER, [build_id], LEASE) == {}  # it is over: not running


async def test_commit_info_is_kept_with_the_build(store: Store) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    await store.set_commit_info(build_id, "Fix the flux capacitor", "Emmett Brown")
    build = await store.get_build(build_id)
    assert build is not None
    assert (build.request.message, build.request.author) == (
        "Fix the flux capacitor",
        "Emmett Brown",
    )


async def test_a_build_whose_lease_lapsed_is_recovered_and_its_old_owner_loses_it(
    store: Store,
) -> None:
    [lapsed] = await deliver(store, "d-1", request(1))
    [live] = await deliver(store, "d-2", request(2, repository="octo/b"))
    await store.claim_builds(1, "stalled-daemon", -1.0)  # a lease that has already run out
    await store.claim_builds(1, OWNER, LEASE)

    assert await store.recover_interrupted(nobody_gone) == [RecoveredBuild(lapsed, requeued=True)]
    assert await state(store, lapsed) == (BuildState.QUEUED, "Queued")
    assert await state(store, live) == (BuildState.RUNNING, "Running make test")
    # The stalled daemon wakes up: its build is not its own any more, and its result is ignored.
    assert await store.heartbeat("stalled-daemon", [lapsed], LEASE) == {}
    assert await store.finish_build(lapsed, SUCCESS, 0, "stalled-daemon") is None
    assert await state(store, lapsed) == (BuildState.QUEUED, "Queued")
    # An owner known to be gone loses its builds at once, lease or not.
    recovered = await store.recover_interrupted(lambda owner: owner == OWNER)
    assert recovered == [RecoveredBuild(live, requeued=True)]


async def test_released_builds_are_recovered_at_once(store: Store) -> None:
    [mine] = await deliver(store, "d-1", request(1))
    [theirs] = await deliver(store, "d-2", request(2, repository="octo/b"))
    await store.claim_builds(1, OWNER, LEASE)
    await store.claim_builds(1, "another-daemon", LEASE)

    assert await store.release(OWNER, [mine, theirs, 999]) == [RecoveredBuild(mine, requeued=True)]
    assert await state(store, mine) == (BuildState.QUEUED, "Queued")
    assert await state(store, theirs) == (BuildState.RUNNING, "Running make test")
    assert await store.release(OWNER, []) == []


# -- finishing and deploys -----------------------------------------------------------------------


async def test_green_test_with_deploy_after_test_queues_a_deploy(store: Store) -> None:
    [test_id] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    await store.claim_builds(1, OWNER, LEASE)
    deploy_id = await store.finish_build(test_id, SUCCESS, 0, OWNER)
    assert deploy_id is not None and deploy_id != test_id

    test = await store.get_build(test_id)
    assert test is not None
    assert (test.state, test.description, test.exit_code) == (
        BuildState.SUCCESS,
        SUCCESS.description,
        0,
    )
    assert test.finished_at is not None
    deploy = await store.get_build(deploy_id)
    assert deploy is not None
    assert deploy.job is Job.DEPLOY
    assert (deploy.sha, deploy.request.ref, deploy.repository) == (sha(1), "refs/heads/main", REPO)
    assert (deploy.state, deploy.attempt) == (BuildState.QUEUED, 0)
    assert not deploy.request.from_fork
    # GitHub hears the test's success, and the deploy queued in its own context.
    sent = await drain(store)
    assert sorted((item.build_id, item.context, item.status) for item in sent) == [
        (test_id, "hobotnica/test", SUCCESS),
        (deploy_id, "hobotnica/deploy", statuses.queued(Job.DEPLOY)),
    ]

    # finishing again changes nothing and unlocks nothing
    assert await store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert await deploys_of(store) == [deploy_id]

    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert (claimed.id, claimed.job) == (deploy_id, Job.DEPLOY)
    deployed = statuses.succeeded(Job.DEPLOY, 3.0)
    assert await store.finish_build(deploy_id, deployed, 0, OWNER) is None


@pytest.mark.parametrize(
    "status",
    [FAILURE, statuses.errored("Timed out after 3600 s")],
    ids=["failure", "error"],
)
async def test_a_test_that_is_not_green_queues_no_deploy(store: Store, status: Status) -> None:
    [test_id] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    await store.claim_builds(1, OWNER, LEASE)
    exit_code = 2 if status.state is StatusState.FAILURE else None
    assert await store.finish_build(test_id, status, exit_code, OWNER) is None
    assert await state(store, test_id) == (BuildState(status.state.value), status.description)
    assert await deploys_of(store) == []


async def test_a_green_test_without_deploy_after_test_queues_no_deploy(store: Store) -> None:
    [test_id] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    assert await store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert await deploys_of(store) == []


async def test_a_fork_never_gets_a_deploy(store: Store) -> None:
    fork = request(1, deploy_after_test=True, from_fork=True, pull_request=3)
    [test_id] = await deliver(store, "d-1", fork)
    await store.claim_builds(1, OWNER, LEASE)
    assert await store.finish_build(test_id, SUCCESS, 0, OWNER) is None
    assert (await state(store, test_id))[0] is BuildState.SUCCESS
    assert await deploys_of(store) == []


async def test_a_newer_deploy_supersedes_an_older_queued_deploy(store: Store) -> None:
    [t1] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    await store.claim_builds(1, OWNER, LEASE)
    [t2] = await deliver(
        store, "d-2", request(2, deploy_after_test=True)
    )  # t1 runs: not superseded
    d1 = await store.finish_build(t1, SUCCESS, 0, OWNER)
    assert d1 is not None
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == t2  # FIFO per repository: the test that arrived first runs first
    d2 = await store.finish_build(t2, SUCCESS, 0, OWNER)
    assert d2 is not None and d2 > d1
    assert await state(store, d1) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    assert await state(store, d2) == (BuildState.QUEUED, "Queued")
    # d1 was never announced: no status at all (its commit's deploy context has no other state).
    sent = [(item.build_id, item.status) for item in await drain(store)]
    assert (d2, statuses.queued(Job.DEPLOY)) in sent
    assert d1 not in [build_id for build_id, _ in sent]
    [next_build] = await store.claim_builds(1, OWNER, LEASE)
    assert next_build.id == d2


async def test_a_deploy_of_another_repository_is_not_superseded(store: Store) -> None:
    [ta] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    [tb] = await deliver(store, "d-2", request(2, repository="octo/b", deploy_after_test=True))
    await store.claim_builds(2, OWNER, LEASE)
    da = await store.finish_build(ta, SUCCESS, 0, OWNER)
    db = await store.finish_build(tb, SUCCESS, 0, OWNER)
    assert da is not None and db is not None
    assert (await state(store, da))[0] is BuildState.QUEUED
    assert (await state(store, db))[0] is BuildState.QUEUED


# -- the outbox ----------------------------------------------------------------------------------


async def test_only_the_newest_waiting_status_per_commit_and_context_is_sent(
    store: Store,
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    [item] = await drain(store)
    assert item.build_id == build_id
    assert (item.repository, item.sha, item.context) == (REPO, sha(1), "hobotnica/test")
    assert item.status == Status(StatusState.PENDING, "Running make test")
    assert item.attempts == 0
    assert await store.pending_status_count() == 0  # "Queued" went with it, unsent
    await store.finish_build(build_id, SUCCESS, 0, OWNER)
    [final] = await drain(store)
    assert final.status == SUCCESS
    assert await drain(store) == []
    assert await store.next_status(NOW) == (None, None)
    assert await store.pending_status_count() == 0


async def test_statuses_of_different_contexts_and_commits_do_not_collapse(store: Store) -> None:
    [t1] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    [t2] = await deliver(store, "d-2", request(2, branch="feature"))
    await store.claim_builds(1, OWNER, LEASE)
    deploy_id = await store.finish_build(t1, SUCCESS, 0, OWNER)
    assert deploy_id is not None
    sent = await drain(store)
    assert {(item.build_id, item.status.state, item.status.description) for item in sent} == {
        (t1, StatusState.SUCCESS, SUCCESS.description),
        (t2, StatusState.PENDING, "Queued"),
        (deploy_id, StatusState.PENDING, "Queued"),
    }
    assert {item.context for item in sent if item.build_id == deploy_id} == {"hobotnica/deploy"}


async def test_the_newest_builds_statuses_go_first(store: Store) -> None:
    ids = [
        (await deliver(store, f"d-{n}", request(n, repository=f"octo/r{n}")))[0] for n in range(3)
    ]
    assert [item.build_id for item in await drain(store)] == ids[::-1]


async def test_a_pending_state_is_held_briefly_and_a_final_one_is_due_at_once(
    store: Store,
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    build = await store.get_build(build_id)
    assert build is not None
    written = build.queued_at
    item, retry_at = await store.next_status(written)  # "Queued", on the clock it was written
    assert item is None and retry_at is not None and retry_at > written
    item, _ = await store.next_status(written + 60)
    assert item is not None and item.status == statuses.queued(Job.TEST)
    await store.status_done(item.id, "sent")
    await store.claim_builds(1, OWNER, LEASE)
    await store.finish_build(build_id, SUCCESS, 0, OWNER)  # collapses the held "Running"
    final = await store.get_build(build_id)
    assert final is not None and final.finished_at is not None
    item, _ = await store.next_status(final.finished_at)
    assert item is not None and item.status == SUCCESS


async def test_superseded_build_never_announced_gets_no_status(store: Store) -> None:
    [old] = await deliver(store, "d-1", request(1))
    [new] = await deliver(store, "d-2", request(2))
    sent = await drain(store)
    assert [(item.build_id, item.sha, item.status) for item in sent] == [
        (new, sha(2), statuses.queued(Job.TEST))
    ]
    assert old not in [item.build_id for item in sent]
    assert await store.pending_status_count() == 0


async def test_superseded_build_already_announced_gets_its_error(store: Store) -> None:
    [old] = await deliver(store, "d-1", request(1))
    item, _ = await store.next_status(NOW)
    assert item is not None and item.build_id == old
    assert (item.status, item.sha) == (statuses.queued(Job.TEST), sha(1))
    await store.status_done(item.id, "sent")

    [new] = await deliver(store, "d-2", request(2))
    sent = await drain(store)
    assert sorted((item.build_id, item.status) for item in sent) == [
        (old, Status(StatusState.ERROR, f"Superseded by {sha(2)[:7]}")),
        (new, statuses.queued(Job.TEST)),
    ]
    assert await store.pending_status_count() == 0


async def test_a_build_superseded_while_its_pending_is_in_flight_gets_its_error(
    store: Store,
) -> None:
    """The reporter is posting "Queued" when a newer push supersedes the build: GitHub will
    have heard of it, so it must hear how it ended, or the commit stays `pending` for ever."""
    [old] = await deliver(store, "d-1", request(1))
    in_flight, _ = await store.next_status(NOW)
    assert in_flight is not None and in_flight.build_id == old
    assert in_flight.status == statuses.queued(Job.TEST)

    [new] = await deliver(store, "d-2", request(2))
    await store.status_done(in_flight.id, "sent")  # GitHub answers the post in flight

    assert await state(store, old) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    sent = await drain(store)
    assert sorted((item.build_id, item.status) for item in sent) == [
        (old, Status(StatusState.ERROR, f"Superseded by {sha(2)[:7]}")),
        (new, statuses.queued(Job.TEST)),
    ]
    assert await store.pending_status_count() == 0


async def test_status_retry_waits_until_its_time(store: Store) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    item, retry_at = await store.next_status(NOW)
    assert item is not None and retry_at is None
    await store.status_retry(item.id, NOW + 60)

    assert await store.next_status(NOW) == (None, NOW + 60)
    assert await store.next_status(NOW + 59.9) == (None, NOW + 60)
    again, retry_at = await store.next_status(NOW + 60)
    assert again is not None and retry_at is None
    assert (again.id, again.build_id, again.attempts) == (item.id, build_id, 1)
    await store.status_retry(again.id, NOW + 180)
    assert await store.next_status(NOW + 61) == (None, NOW + 180)
    await store.status_done(again.id, "sent")
    assert await store.next_status(NOW + 1000) == (None, None)


async def test_a_retried_status_is_replaced_by_a_newer_one(store: Store) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    item, _ = await store.next_status(NOW)
    assert item is not None
    await store.status_retry(item.id, NOW + 600)
    await store.claim_builds(1, OWNER, LEASE)
    newer, retry_at = await store.next_status(NOW)
    assert newer is not None and retry_at is None
    assert newer.build_id == build_id
    assert newer.status.description == "Running make test"
    await store.status_done(newer.id, "sent")
    assert await store.next_status(NOW + 600) == (None, None)  # the retried "Queued" is gone
    assert await store.pending_status_count() == 0


# -- recovery after a crash ----------------------------------------------------------------------


async def test_an_interrupted_test_is_requeued_once_then_ends_in_error(
    backend: Backend, store: Store
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.attempt == 1
    store = await backend.restart(store)  # the daemon dies with the build running

    assert await store.recover_interrupted(everyone_gone) == [
        RecoveredBuild(build_id, requeued=True)
    ]
    assert await state(store, build_id) == (BuildState.QUEUED, "Queued")
    # "Queued", "Running", "Queued" wait: the build re-run posts `pending` "Queued" again.
    assert await store.pending_status_count() == 3
    assert [(item.build_id, item.status) for item in await drain(store)] == [
        (build_id, statuses.queued(Job.TEST))
    ]
    assert await store.recover_interrupted(everyone_gone) == []  # nothing is running any more
    [again] = await store.claim_builds(1, OWNER, LEASE)
    assert (again.id, again.attempt) == (build_id, 2)
    store = await backend.restart(store)  # and dies again

    assert await store.recover_interrupted(everyone_gone) == [
        RecoveredBuild(build_id, requeued=False)
    ]
    build = await store.get_build(build_id)
    assert build is not None
    assert (build.state, build.description) == (BuildState.ERROR, INTERRUPTED)
    assert build.finished_at is not None
    assert await store.claim_builds(1, OWNER, LEASE) == []
    [final] = await drain(store)
    assert (final.build_id, final.status) == (build_id, statuses.errored(INTERRUPTED))


async def test_an_interrupted_deploy_ends_in_error_at_once(backend: Backend, store: Store) -> None:
    [test_id] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    [queued_test] = await deliver(store, "d-2", request(2, repository="octo/other"))
    await store.claim_builds(1, OWNER, LEASE)
    deploy_id = await store.finish_build(test_id, SUCCESS, 0, OWNER)
    assert deploy_id is not None
    # arrival order: the other test came first
    [other, deploy] = await store.claim_builds(2, OWNER, LEASE)
    assert (deploy.id, deploy.job, deploy.attempt) == (deploy_id, Job.DEPLOY, 1)
    assert other.id == queued_test
    store = await backend.restart(store)

    recovered = await store.recover_interrupted(everyone_gone)
    assert sorted(recovered, key=lambda r: r.id) == [
        RecoveredBuild(queued_test, requeued=True),
        RecoveredBuild(deploy_id, requeued=False),
    ]
    assert await state(store, deploy_id) == (BuildState.ERROR, INTERRUPTED)
    sent = {item.build_id: item for item in await drain(store)}
    assert sent[deploy_id].status == statuses.errored(INTERRUPTED)
    assert sent[deploy_id].context == "hobotnica/deploy"
    assert sent[queued_test].status == statuses.queued(Job.TEST)
    assert [b.id for b in await store.claim_builds(5, OWNER, LEASE)] == [queued_test]


async def test_a_dropped_superseded_error_does_not_swallow_another_builds_final_status(
    store: Store,
) -> None:
    """One commit, two lanes: the push to `feature` and the pull request from it.

    The push build finishes green before the reporter posted anything for the commit; then a new
    push to the pull request supersedes the pull request's queued build of the same commit. The
    push build was not superseded, so its `success` must still reach GitHub.
    """
    [push] = await deliver(store, "d-1", request(1, branch="feature"))
    [pr] = await deliver(store, "d-2", request(1, branch="feature", pull_request=5))
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == push
    await store.finish_build(push, SUCCESS, 0, OWNER)
    [newer_pr] = await deliver(store, "d-3", request(2, branch="feature", pull_request=5))
    assert await state(store, pr) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")

    sent = [(item.build_id, item.status) for item in await drain(store)]
    assert (push, SUCCESS) in sent
    assert (newer_pr, statuses.queued(Job.TEST)) in sent
    assert await store.pending_status_count() == 0


async def test_a_held_pending_of_another_build_does_not_swallow_a_final_state(
    store: Store,
) -> None:
    # Build A (a push) finishes while build B (a pull request of the same commit) has just been
    # queued; B is then superseded before GitHub heard of it. A's success must still be posted,
    # or the commit would keep showing A's old "Running" for ever.
    [a] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    await drain(store)  # GitHub shows A running
    await store.finish_build(a, SUCCESS, 0, OWNER)
    [b] = await deliver(store, "d-2", request(1, branch="feature", pull_request=7))  # held pending

    a_done = await store.get_build(a)
    assert a_done is not None and a_done.finished_at is not None
    b_queued = await store.get_build(b)
    assert b_queued is not None
    # On the reporter's clock right then: A's success is due, B's "Queued" is held.
    item, _ = await store.next_status(b_queued.queued_at)
    assert item is not None and (item.build_id, item.status) == (a, SUCCESS)
    await store.status_done(item.id, "sent")
    await deliver(store, "d-3", request(2, branch="feature", pull_request=7))  # supersedes B

    assert await state(store, b) == (BuildState.ERROR, f"Superseded by {sha(2)[:7]}")
    sent_for_commit = [i for i in await drain(store) if i.sha == sha(1)]
    assert sent_for_commit == []  # nothing of B: the commit's last state stays A's success


async def test_no_commit_gets_more_statuses_than_github_keeps(store: Store) -> None:
    """GitHub keeps 1000 statuses per commit and context: from the 990th on only final states
    are posted, and after the 1000th nothing."""
    [build_id] = await deliver(store, "d-0", request(1))  # its "Queued" goes under newer ones
    # A very busy sha: pushed to other branches, each push announced and then cancelled.
    for n in range(494):
        await deliver(store, f"d-busy-{n}", request(1, branch=f"busy-{n}"))
        announced = await post_one(store)
        assert announced.status == statuses.queued(Job.TEST)
        await store.cancel_build(announced.build_id, CANCELLED)
        assert (await post_one(store)).status == statuses.errored(CANCELLED)
    waiting = []
    for n in range(2):  # the 989th and the 990th status: a `pending` one still goes out
        [busy] = await deliver(store, f"d-last-{n}", request(1, branch=f"last-{n}"))
        assert [(i.build_id, i.status) for i in await drain(store)] == [
            (busy, statuses.queued(Job.TEST))
        ]
        waiting.append(busy)

    await store.claim_builds(1, OWNER, LEASE)  # a pending "Running" state: not sent any more
    assert await drain(store) == []
    await store.finish_build(build_id, SUCCESS, 0, OWNER)  # the final state still goes out
    assert [item.status for item in await drain(store)] == [SUCCESS]
    for busy in waiting:
        await store.cancel_build(busy, CANCELLED)
        assert [item.status for item in await drain(store)] == [statuses.errored(CANCELLED)]
    for n in range(7):  # and final states go on up to GitHub's 1000th
        [late] = await deliver(store, f"d-late-{n}", request(1, branch=f"late-{n}"))
        await run_to_end(store, late, FAILURE)
        assert [item.status for item in await drain(store)] == [FAILURE]
    [again] = await deliver(store, "d-2", request(1, branch="other"))
    await run_to_end(store, again, SUCCESS)
    assert await drain(store) == []  # 1000 reached: nothing more for this commit and context
    assert await store.pending_status_count() == 0
    # Another commit is not held back by it.
    [other] = await deliver(store, "d-3", request(2, branch="other"))
    assert [item.build_id for item in await drain(store)] == [other]


# -- cancel --------------------------------------------------------------------------------------


async def test_cancelling_a_queued_build_ends_it_and_tells_github(store: Store) -> None:
    (build_id,) = await deliver(store, "d1", request(1))
    await drain(store)  # GitHub heard "Queued"

    assert await store.cancel_build(build_id, CANCELLED) is BuildState.QUEUED

    assert await state(store, build_id) == (BuildState.ERROR, "Cancelled")
    assert [(item.build_id, item.status) for item in await drain(store)] == [
        (build_id, statuses.errored("Cancelled"))
    ]
    assert await store.claim_builds(1, OWNER, LEASE) == []


async def test_a_queued_build_github_never_heard_of_ends_silently(store: Store) -> None:
    (build_id,) = await deliver(store, "d1", request(1))

    await store.cancel_build(build_id, CANCELLED)

    assert await state(store, build_id) == (BuildState.ERROR, "Cancelled")
    assert await store.pending_status_count() == 0  # dropped at once
    assert await drain(store) == []


async def test_a_build_cancelled_while_its_pending_is_in_flight_tells_github(
    store: Store,
) -> None:
    """ "Queued" is being posted when the build is cancelled: GitHub will have heard of it, so
    it must hear that it ended, or the commit shows `pending` for ever."""
    (build_id,) = await deliver(store, "d1", request(1))
    in_flight, _ = await store.next_status(NOW)
    assert in_flight is not None and in_flight.build_id == build_id
    assert in_flight.status == statuses.queued(Job.TEST)

    await store.cancel_build(build_id, CANCELLED)
    await store.status_done(in_flight.id, "sent")  # GitHub answers the post in flight

    assert [(item.build_id, item.status) for item in await drain(store)] == [
        (build_id, statuses.errored("Cancelled"))
    ]
    assert await store.pending_status_count() == 0


async def test_cancelling_a_running_build_asks_its_daemon_to_stop(store: Store) -> None:
    (build_id,) = await deliver(store, "d1", request(1))
    await store.claim_builds(1, OWNER, LEASE)

    assert await store.cancel_build(build_id, CANCELLED) is BuildState.RUNNING

    assert (await state(store, build_id))[0] is BuildState.RUNNING
    assert await store.heartbeat(OWNER, [build_id], LEASE) == {build_id: CANCELLED}


async def test_cancelling_a_finished_or_unknown_build_changes_nothing(store: Store) -> None:
    (build_id,) = await deliver(store, "d1", request(1))
    await run_to_end(store, build_id)

    assert await store.cancel_build(build_id, CANCELLED) is BuildState.SUCCESS
    assert (await state(store, build_id))[0] is BuildState.SUCCESS
    assert await store.cancel_build(999, CANCELLED) is None


# -- notifications -------------------------------------------------------------------------------


async def test_a_branch_gone_red_is_queued_as_it_ends_and_settled_channel_by_channel(
    store: Store,
) -> None:
    (green,) = await deliver(store, "d1", request(1))
    await run_to_end(store, green)
    assert await store.next_notification(time.time() + 1) == (None, None)  # a first build: quiet
    (red,) = await deliver(store, "d2", request(2))
    await run_to_end(store, red, statuses.failed(Job.TEST, 2, 1.0))

    later = time.time() + 1
    item, _ = await store.next_notification(later)
    assert item is not None and (item.build_id, item.kind, item.sent_to) == (red, "failed", ())
    await store.notification_sent(item.id, "slack")
    await store.notification_settled(item.id, later + 60)  # the webhook's receiver was down
    assert await store.next_notification(later) == (None, later + 60)
    again, _ = await store.next_notification(later + 60)
    assert again is not None and (again.sent_to, again.attempts) == (("slack",), 1)
    await store.notification_settled(again.id, None)
    assert await store.next_notification(later + 3600) == (None, None)


# -- schedules -----------------------------------------------------------------------------------


async def test_a_schedule_is_remembered_with_the_slot_built_last_until_it_changes(
    store: Store,
) -> None:
    first = await store.schedule_seen("octo/app", "0 3 * * * UTC")
    assert first.built_slot is None
    await store.schedule_built("OCTO/app", 1000.0)
    await store.schedule_built("octo/app", 500.0)  # an older slot, late: the last stays
    again = await store.schedule_seen("octo/App", "0 3 * * * UTC")
    assert (again.since, again.built_slot) == (first.since, 1000.0)

    changed = await store.schedule_seen("octo/app", "0 4 * * * UTC")
    assert changed.built_slot is None and changed.since >= first.since


# -- re-run --------------------------------------------------------------------------------------


async def test_a_rerun_is_a_new_build_of_the_same_commit_and_lane(store: Store) -> None:
    (first,) = await deliver(store, "d1", request(1, branch="feature"))
    await run_to_end(store, first, statuses.failed(Job.TEST, 2, 1.0))

    again = await store.rerun_build(first)

    assert again.build_id is not None and again.build_id != first
    old, new = await store.get_build(first), await store.get_build(again.build_id)
    assert old is not None and new is not None
    assert (new.state, new.description, new.delivery_id) == (BuildState.QUEUED, "Queued", None)
    assert new.request == old.request


async def test_a_rerun_remembers_who_asked_and_keeps_the_pushs_range(store: Store) -> None:
    pushed = replace(request(1, branch="feature"), before="b" * 40)
    (first,) = await deliver(store, "d1", pushed)
    await run_to_end(store, first, statuses.failed(Job.TEST, 2, 1.0))

    again = await store.rerun_build(first, by="alice")

    assert again.build_id is not None
    old, new = await store.get_build(first), await store.get_build(again.build_id)
    assert old is not None and new is not None
    assert (old.request.before, old.request.asked_by) == ("b" * 40, "")
    assert (new.request.before, new.request.asked_by) == ("b" * 40, "alice")


async def test_a_rerun_supersedes_nothing(store: Store) -> None:
    (old,) = await deliver(store, "d1", request(1))
    await run_to_end(store, old)
    (newer,) = await deliver(store, "d2", request(2))  # queued, same branch

    assert (await store.rerun_build(old)).build_id is not None
    assert (await state(store, newer))[0] is BuildState.QUEUED


async def test_an_unfinished_build_is_not_rerun(store: Store) -> None:
    (build_id,) = await deliver(store, "d1", request(1))

    assert (await store.rerun_build(build_id)).refused == "the build has not finished"
    assert (await store.rerun_build(999)).refused == "no such build"


async def test_rerunning_a_deploy_tests_first_then_deploys(store: Store) -> None:
    (test_id,) = await deliver(store, "d1", request(1, deploy_after_test=True))
    deploy_id = await run_to_end(store, test_id)
    assert deploy_id is not None
    await run_to_end(store, deploy_id)

    again = await store.rerun_build(deploy_id)

    assert again.build_id is not None
    rerun = await store.get_build(again.build_id)
    assert rerun is not None
    assert (rerun.job, rerun.request.deploy_after_test, rerun.sha) == (Job.TEST, True, sha(1))
    redeploy = await run_to_end(store, again.build_id)
    assert redeploy is not None and await store.get_build(redeploy) is not None


async def test_a_deploy_is_not_rerun_once_a_later_push_is_deployed_or_on_its_way(
    store: Store,
) -> None:
    (old_test,) = await deliver(store, "d1", request(1, deploy_after_test=True))
    old_deploy = await run_to_end(store, old_test)
    assert old_deploy is not None
    await run_to_end(store, old_deploy)
    (new_test,) = await deliver(store, "d2", request(2, deploy_after_test=True))

    # The later push's tests are queued, a deploy after them: going back would race it.
    refused = await store.rerun_build(old_deploy)
    assert refused.build_id is None
    assert refused.refused == "a later push of this repository is deployed or on its way"
    # A re-run of the old test still tests, and deploys nothing.
    test_again = await store.rerun_build(old_test)
    assert test_again.build_id is not None
    rerun = await store.get_build(test_again.build_id)
    assert rerun is not None and not rerun.request.deploy_after_test

    new_deploy = await run_to_end(store, new_test)
    assert new_deploy is not None
    await run_to_end(store, test_again.build_id)
    await run_to_end(store, new_deploy)
    assert (await store.rerun_build(old_deploy)).build_id is None  # the later push is deployed
    assert (await store.rerun_build(new_deploy)).build_id is not None  # the newest may go again


# -- named leases and pauses ---------------------------------------------------------------------


async def test_a_lease_is_held_by_one_live_owner_at_a_time(store: Store) -> None:
    assert await store.acquire_lease("reporter", "a", 60, nobody_gone)
    assert await store.acquire_lease("reporter", "a", 60, nobody_gone)  # renewed
    assert not await store.acquire_lease("reporter", "b", 60, nobody_gone)
    assert await store.acquire_lease("other-work", "b", 60, nobody_gone)  # another name

    await store.drop_lease("reporter", "b")  # not b's to drop
    assert not await store.acquire_lease("reporter", "b", 60, nobody_gone)
    await store.drop_lease("reporter", "a")
    assert await store.acquire_lease("reporter", "b", 60, nobody_gone)
    assert not await store.acquire_lease("reporter", "a", 60, nobody_gone)


async def test_a_lease_of_a_gone_or_lapsed_owner_is_taken_over(store: Store) -> None:
    assert await store.acquire_lease("reporter", "a", 60, nobody_gone)
    assert await store.acquire_lease("reporter", "b", 60, lambda owner: owner == "a")
    assert not await store.acquire_lease("reporter", "a", 60, nobody_gone)  # b holds it now

    assert await store.acquire_lease("deploys", "a", -1, nobody_gone)  # already lapsed
    assert await store.acquire_lease("deploys", "b", 60, nobody_gone)


async def test_a_pause_lasts_until_the_latest_time_asked_for(store: Store) -> None:
    assert await store.paused_until("github") == 0.0
    await store.pause("github", NOW + 100)
    await store.pause("github", NOW + 50)  # a shorter pause never cuts a longer one short
    assert await store.paused_until("github") == NOW + 100
    await store.pause("github", NOW + 200)
    assert await store.paused_until("github") == NOW + 200
    assert await store.paused_until("elsewhere") == 0.0


# -- registrations and variables -----------------------------------------------------------------


def registration(repository: str = "octo-org/app", uid: str = "uid-1", **kw: Any) -> Registration:
    fields: dict[str, Any] = {
        "repository": repository,
        "webhook_uid": uid,
        "webhook_secret": f"secret-of-{uid}",
        "default_branch": "main",
        "deploy_branch": None,
        "deploy_enabled": True,
        "timeout": None,
        "registered_by": "alice",
        "token": f"ghp_token_of_{uid}",
    }
    return Registration(**(fields | kw))


async def test_a_registration_is_found_by_name_and_by_its_webhook(store: Store) -> None:
    assert await store.registration("octo-org/app") is None
    registered = await store.register(
        registration(deploy_branch="release", deploy_enabled=False, timeout=600)
    )
    assert registered is not None
    assert (registered.repository, registered.owner, registered.webhook_uid) == (
        "octo-org/app",
        "octo-org",
        "uid-1",
    )
    assert (registered.status, registered.status_reason) == ("cloning", "")
    assert (registered.default_branch, registered.deploy_branch) == ("main", "release")
    assert (registered.deploy_enabled, registered.timeout) == (False, 600)
    assert (registered.registered_by, registered.hook_id) == ("alice", None)
    assert (registered.token, registered.webhook_secret) == (
        "ghp_token_of_uid-1",
        "secret-of-uid-1",
    )
    assert registered.created_at > 0

    assert await store.registration("octo-org/app") == registered
    assert await store.registration("Octo-Org/APP") == registered  # GitHub names ignore case
    assert await store.registration_by_webhook("uid-1") == registered
    assert await store.registration_by_webhook("uid-2") is None
    assert await store.status_token("octo-org/app") == "ghp_token_of_uid-1"
    assert await store.status_token("octo-org/other") is None

    assert await store.register(registration(uid="uid-2")) is None  # registered already
    assert await store.register(registration("OCTO-ORG/App", uid="uid-3")) is None
    assert await store.registration_by_webhook("uid-2") is None
    await store.register(registration("octo-org/Zebra", uid="uid-4"))
    await store.register(registration("octo-org/beta", uid="uid-5"))
    names = [r.repository for r in await store.registrations()]
    assert names == ["octo-org/app", "octo-org/beta", "octo-org/Zebra"]  # by name, any case


async def test_a_registration_status_moves_only_from_the_status_asked_for(store: Store) -> None:
    await store.register(registration())

    assert not await store.set_registration_status("octo-org/app", "ready", only_from="disabled")
    assert (await _registered(store)).status == "cloning"
    assert await store.set_registration_status("octo-org/app", "ready", only_from="cloning")
    assert (await _registered(store)).status == "ready"
    assert await store.set_registration_status("octo-org/app", "clone_failed", "no such ref")
    failed = await _registered(store)
    assert (failed.status, failed.status_reason) == ("clone_failed", "no such ref")
    assert not await store.set_registration_status("octo-org/unknown", "ready")


async def _registered(store: Store, repository: str = "octo-org/app") -> RegisteredRepository:
    found = await store.registration(repository)
    assert found is not None
    return found


async def test_disabling_touches_only_the_registration_that_was_checked(store: Store) -> None:
    repository = "octo-org/app"
    await store.register(registration(uid="uid-1"))
    await store.replace_env(repository, {"LEVEL": "production"})
    [running] = await deliver(store, "d-1", request(1, repository=repository, branch="a"))
    await store.claim_builds(1, OWNER, LEASE)
    [queued] = await deliver(store, "d-2", request(2, repository=repository, branch="b"))

    # An access check of an older registration (another webhook uid) changes nothing.
    assert await store.disable_registration(repository, "access lost", "uid-old") is None
    assert (await _registered(store, repository)).status == "cloning"
    assert await store.status_token(repository) == "ghp_token_of_uid-1"
    assert (await state(store, queued))[0] is BuildState.QUEUED
    assert await store.heartbeat(OWNER, [running], LEASE) == {running: None}

    assert await store.disable_registration(repository, "access lost", "uid-1") == [running]
    disabled = await _registered(store, repository)
    assert (disabled.status, disabled.status_reason, disabled.token) == (
        "disabled",
        "access lost",
        None,
    )
    assert await store.status_token(repository) is None
    assert await state(store, queued) == (
        BuildState.ERROR,
        "Not built: the repository was disabled",
    )
    assert await store.heartbeat(OWNER, [running], LEASE) == {
        running: "Stopped: the repository was disabled"
    }
    # Registered again (access came back): in place, with the new webhook and token, and the
    # variables it had.
    again = await store.register(registration(uid="uid-2"))
    assert again is not None
    assert (again.status, again.webhook_uid, again.token) == (
        "cloning",
        "uid-2",
        "ghp_token_of_uid-2",
    )
    assert await store.registration_by_webhook("uid-1") is None
    assert await store.variables(repository) == Variables(env={"LEVEL": "production"})


async def test_registration_settings_hook_and_access_check_are_updated(store: Store) -> None:
    await store.register(registration())
    updated = await store.update_registration(
        "octo-org/app", {"deploy_branch": "release", "deploy_enabled": False, "timeout": 120}
    )
    assert updated is not None
    assert (updated.deploy_branch, updated.deploy_enabled, updated.timeout) == (
        "release",
        False,
        120,
    )
    assert await store.registration("octo-org/app") == updated
    cleared = await store.update_registration("octo-org/app", {"timeout": None})
    assert cleared is not None and (cleared.timeout, cleared.deploy_branch) == (None, "release")
    assert await store.update_registration("octo-org/unknown", {"timeout": 5}) is None

    await store.set_registration_hook("octo-org/app", "hook-9")
    assert (await _registered(store)).hook_id == "hook-9"
    await store.access_checked("octo-org/app", 1234.0, "uid-1")
    await store.access_checked("octo-org/app", 9999.0, "uid-old")  # another registration's check
    assert (await _registered(store)).access_checked_at == 1234.0


async def test_removing_a_registration_ends_its_builds_and_retires_its_token(
    store: Store,
) -> None:
    repository = "octo-org/app"
    await store.register(registration())
    await store.replace_env(repository, {"LEVEL": "production"})
    await store.put_secret(repository, "API_KEY", "s3cret")
    await store.replace_env("octo-org", {"SHARED": "yes"})
    [running] = await deliver(store, "d-1", request(1, repository=repository))
    await store.claim_builds(1, OWNER, LEASE)
    [queued] = await deliver(store, "d-2", request(2, repository=repository, branch="other"))

    assert await store.remove_registration("Octo-Org/App") == [running]

    assert await store.registration(repository) is None
    assert await store.registration_by_webhook("uid-1") is None
    assert await store.registrations() == []
    assert await store.variables(repository) == Variables()
    assert await store.variables("octo-org") == Variables(env={"SHARED": "yes"})  # the owner's
    assert await state(store, queued) == (BuildState.ERROR, "Not built: the repository was removed")
    assert await store.heartbeat(OWNER, [running], LEASE) == {
        running: "Stopped: the repository was removed"
    }
    # The final statuses of the builds it stopped still go out with its token, for a while.
    assert await store.status_token(repository) == "ghp_token_of_uid-1"
    assert await store.remove_registration(repository) == []  # gone already
    # Registered again: its own new token, not the retired one.
    await store.register(registration(uid="uid-2"))
    assert await store.status_token(repository) == "ghp_token_of_uid-2"


async def test_build_variables_are_the_owners_overridden_by_the_repositorys(store: Store) -> None:
    registered = await store.register(registration())
    assert registered is not None
    assert await store.build_variables(registered) == Variables()
    await store.replace_env("octo-org", {"LEVEL": "staging", "REGION": "eu"})
    await store.put_secret("octo-org", "TOKEN", "owner-token")
    await store.put_secret("octo-org", "SHARED", "for-all")
    await store.replace_env("octo-org/app", {"LEVEL": "production"})
    await store.put_secret("octo-org/app", "TOKEN", "repo-token")
    await store.replace_env("octo-org/other", {"LEVEL": "other"})

    assert await store.variables("octo-org") == Variables(
        env={"LEVEL": "staging", "REGION": "eu"},
        secrets={"SHARED": "for-all", "TOKEN": "owner-token"},
    )
    merged = Variables(
        env={"LEVEL": "production", "REGION": "eu"},
        secrets={"SHARED": "for-all", "TOKEN": "repo-token"},
    )
    assert await store.build_variables(registered) == merged
    assert await store.registration_with_variables("octo-org/app") == (registered, merged)
    assert await store.registration_with_variables("octo-org/unknown") is None
    assert await store.variables("Octo-Org/App") == await store.variables("octo-org/app")


async def test_replacing_the_env_keeps_the_secrets(store: Store) -> None:
    await store.replace_env("octo-org", {"A": "1", "B": "2"})
    await store.put_secret("octo-org", "A", "secret-a")  # a secret may share an env's name
    await store.replace_env("octo-org", {"C": "3"})
    assert await store.variables("octo-org") == Variables(env={"C": "3"}, secrets={"A": "secret-a"})
    await store.replace_env("octo-org", {})
    assert await store.variables("octo-org") == Variables(secrets={"A": "secret-a"})


async def test_a_secret_is_new_once_replaced_after_and_deleted_once(store: Store) -> None:
    assert await store.put_secret("octo-org", "KEY", "one")
    assert not await store.put_secret("octo-org", "KEY", "two")  # replaced, not new
    assert (await store.variables("octo-org")).secrets == {"KEY": "two"}
    assert await store.put_secret("octo-org/app", "KEY", "own")  # another scope: new there

    assert await store.delete_secret("octo-org", "KEY")
    assert not await store.delete_secret("octo-org", "KEY")
    assert not await store.delete_secret("octo-org", "NEVER")
    assert (await store.variables("octo-org")).secrets == {}
    assert (await store.variables("octo-org/app")).secrets == {"KEY": "own"}


# -- listings ------------------------------------------------------------------------------------


async def test_list_builds_pages_newest_first_with_filters(store: Store) -> None:
    ids = []
    for n in range(1, 8):  # odd ones to main, even ones to feature; 3 and 6 fail
        branch = "main" if n % 2 else "feature"
        [build_id] = await deliver(store, f"d-{n}", request(n, branch=branch))
        await run_to_end(store, build_id, FAILURE if n % 3 == 0 else SUCCESS)
        ids.append(build_id)
    [queued] = await deliver(store, "d-8", request(8, branch="feature"))
    ids.append(queued)
    await deliver(store, "d-other", request(99, repository="octo/other"))
    newest_first = ids[::-1]

    assert [b.id for b in await store.list_builds(REPO)] == newest_first
    first = await store.list_builds(REPO, limit=3)
    assert [b.id for b in first] == newest_first[:3]
    second = await store.list_builds(REPO, before=first[-1].id, limit=3)
    assert [b.id for b in second] == newest_first[3:6]
    last = await store.list_builds(REPO, before=second[-1].id, limit=3)
    assert [b.id for b in last] == newest_first[6:]
    assert await store.list_builds(REPO, before=ids[0]) == []

    on_main = [b.id for b in await store.list_builds(REPO, branch="main")]
    assert on_main == [ids[6], ids[4], ids[2], ids[0]]
    assert [b.id for b in await store.list_builds(REPO, state="failure")] == [ids[5], ids[2]]
    assert [b.id for b in await store.list_builds(REPO, branch="feature", state="failure")] == [
        ids[5]
    ]
    assert [b.id for b in await store.list_builds(REPO, state="queued")] == [queued]
    assert [b.id for b in await store.list_builds(REPO, branch="feature", limit=2)] == [
        ids[7],
        ids[5],
    ]
    assert await store.list_builds(REPO, branch="nowhere") == []
    assert await store.list_builds("octo/unknown") == []
    assert sorted(await store.repositories_with_builds()) == ["octo/app", "octo/other"]


async def test_get_builds_answers_the_ids_that_exist(store: Store) -> None:
    a, b = await deliver(store, "d-1", request(1), request(2, branch="feature"))
    found = await store.get_builds([a, b, 999])
    assert set(found) == {a, b}
    assert found[a] == await store.get_build(a)
    assert found[b].sha == sha(2)
    assert await store.get_builds([]) == {}
    assert await store.get_build(999) is None


async def test_latest_per_lane_is_each_lanes_newest_build_that_was_not_superseded(
    store: Store,
) -> None:
    [main_test] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    deploy = await run_to_end(store, main_test)
    assert deploy is not None
    [pr] = await deliver(store, "d-2", request(2, branch="feature", pull_request=4))
    await deliver(store, "d-3", pushed(3, 1_700_000_003.0, branch="feature"))
    [head] = await deliver(store, "d-5", pushed(5, 1_700_000_005.0, branch="feature"))
    # A late redelivery: the newest build of its lane, born superseded by the lane's head.
    [late] = await deliver(store, "d-4", pushed(4, 1_700_000_004.0, branch="feature"))
    assert (await state(store, late))[0] is BuildState.ERROR
    [other] = await deliver(store, "d-6", request(6, repository="octo/b"))

    lanes = await store.latest_per_lane([REPO, "octo/b", "octo/none"], 10)
    assert {name: [b.id for b in builds] for name, builds in lanes.items()} == {
        REPO: [head, pr, deploy, main_test],
        "octo/b": [other],
        "octo/none": [],
    }
    assert [b.id for b in (await store.latest_per_lane([REPO], 2))[REPO]] == [head, pr]


async def test_active_builds_are_running_ones_then_queued_ones_oldest_first(store: Store) -> None:
    [cancelled] = await deliver(store, "d-1", request(1, repository="octo/a"))
    [a_running] = await deliver(store, "d-2", request(2, repository="octo/a", branch="b"))
    [a_queued] = await deliver(store, "d-3", request(3, repository="octo/a", branch="c"))
    [b_running] = await deliver(store, "d-4", request(4, repository="octo/b"))
    [c_running] = await deliver(store, "d-5", request(5, repository="octo/c"))
    [done] = await deliver(store, "d-6", request(6, repository="octo/d"))
    await store.cancel_build(cancelled, CANCELLED)  # ended: not active
    claimed = await store.claim_builds(5, OWNER, LEASE)  # octo/a's next waits for its first
    assert [b.id for b in claimed] == [a_running, b_running, c_running, done]
    await store.finish_build(done, SUCCESS, 0, OWNER)
    [e_queued] = await deliver(store, "d-7", request(7, repository="octo/e"))

    active = [b.id for b in await store.active_builds(10)]
    assert active == [a_running, b_running, c_running, a_queued, e_queued]
    assert [b.id for b in await store.active_builds(2)] == [a_running, b_running]
    assert await store.state_counts() == {"queued": 2, "running": 3}


async def test_latest_test_build_of_a_branch_skips_superseded_builds(store: Store) -> None:
    assert await store.latest_test_build(REPO, "main") is None
    [first] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    deploy = await run_to_end(store, first)
    assert deploy is not None
    await run_to_end(store, deploy)  # a deploy is not a test
    await deliver(store, "d-2", request(2, branch="main", pull_request=8))  # nor a pull request
    await deliver(store, "d-3", request(3, branch="feature"))
    latest = await store.latest_test_build(REPO, "main")
    assert latest is not None and latest.id == first

    [second] = await deliver(store, "d-4", pushed(4, 1_700_000_004.0))
    [third] = await deliver(store, "d-6", pushed(6, 1_700_000_006.0))  # supersedes the second
    [late] = await deliver(store, "d-5", pushed(5, 1_700_000_005.0))  # born superseded
    assert (await state(store, second))[0] is BuildState.ERROR
    assert (await state(store, late))[0] is BuildState.ERROR
    latest = await store.latest_test_build(REPO, "main")
    assert latest is not None and latest.id == third
    assert await store.cancel_build(third, "Cancelled by alice") is BuildState.QUEUED
    latest = await store.latest_test_build(REPO, "main")  # a cancelled build did end that way
    assert latest is not None and latest.id == third
    assert await store.latest_test_build(REPO, "nowhere") is None


async def test_latest_build_of_a_sha_is_its_newest(store: Store) -> None:
    [first] = await deliver(store, "d-1", request(1))
    await run_to_end(store, first)
    [again] = await deliver(store, "d-2", request(1, branch="feature"))
    await deliver(store, "d-3", request(1, repository="octo/b"))
    latest = await store.latest_build_of_sha(REPO, sha(1))
    assert latest is not None and latest.id == again
    assert await store.latest_build_of_sha(REPO, sha(2)) is None


async def test_deploy_branch_seen_is_where_the_newest_deploy_bound_push_went(store: Store) -> None:
    assert await store.deploy_branch_seen(REPO) is None
    await deliver(store, "d-1", request(1, branch="feature"))
    assert await store.deploy_branch_seen(REPO) is None  # not bound for a deploy
    await deliver(store, "d-2", request(2, branch="main", deploy_after_test=True))
    await deliver(store, "d-3", request(3, branch="feature"))
    assert await store.deploy_branch_seen(REPO) == "main"
    await deliver(store, "d-4", request(4, branch="trunk", deploy_after_test=True))
    assert await store.deploy_branch_seen(REPO) == "trunk"  # the default branch was renamed
    await deliver(
        store, "d-5", request(5, branch="main", deploy_after_test=True, pull_request=3)
    )  # a pull request never says where deploys go
    assert await store.deploy_branch_seen(REPO) == "trunk"
    assert await store.deploy_branch_seen("octo/other") is None


# -- upkeep --------------------------------------------------------------------------------------


async def test_prune_keeps_the_newest_finished_builds_of_each_repository(store: Store) -> None:
    finished = []
    for n in range(4):
        [build_id] = await deliver(store, f"d-{n}", request(n, branch=f"b{n}"))
        await run_to_end(store, build_id)
        finished.append(build_id)
    [other] = await deliver(store, "d-other", request(9, repository="octo/other"))
    await run_to_end(store, other)
    [queued] = await deliver(store, "d-q", request(10, branch="queued"))

    pruned = await store.prune(older_than=0.0, keep_per_repository=2)

    # The queued build counts among the newest two, and is never pruned itself.
    assert pruned == finished[:3]
    assert [b.id for b in await store.list_builds(REPO)] == [queued, finished[3]]
    assert [b.id for b in await store.list_builds("octo/other")] == [other]
    assert await store.get_builds(finished[:3]) == {}
    # Their deliveries stay known: GitHub may still redeliver them, and they must not build twice.
    assert await store.known_deliveries(["d-0", "d-1", "d-2"]) == {"d-0", "d-1", "d-2"}
    assert await store.prune(older_than=0.0, keep_per_repository=2) == []


async def test_prune_removes_finished_builds_past_their_age(store: Store) -> None:
    [old] = await deliver(store, "d-1", request(1))
    await run_to_end(store, old)
    [running] = await deliver(store, "d-2", request(2, repository="octo/b"))
    await store.claim_builds(1, OWNER, LEASE)
    [queued] = await deliver(store, "d-3", request(3, branch="feature"))

    assert await store.prune(older_than=NOW, keep_per_repository=100) == [old]
    assert await store.get_build(old) is None
    # However old and however many, builds still queued or running stay.
    assert await store.prune(older_than=NOW, keep_per_repository=0) == []
    assert set(await store.get_builds([running, queued])) == {running, queued}


async def test_prune_forgets_a_delivery_only_after_github_may_no_longer_redeliver_it(
    store: Store,
) -> None:
    day = 24 * 3600.0
    now = time.time()
    for delivery_id, received_at in (("d-4-days", now - 4 * day), ("d-2-days", now - 2 * day)):
        await record_delivery(
            store,
            delivery_id=delivery_id,
            event="issues",
            hook_id="42",
            received_at=received_at,
            outcome="ignored: event",
        )
    await record_delivery(
        store,
        delivery_id="d-with-a-build",
        event="push",
        hook_id="42",
        received_at=now - 4 * day,
        outcome="accepted",
        requests=[request(1)],
    )

    await store.prune(older_than=now - 30 * day, keep_per_repository=100)  # nothing that old
    assert await store.known_deliveries(["d-4-days", "d-2-days", "d-with-a-build"]) == {
        "d-4-days",
        "d-2-days",
        "d-with-a-build",
    }
    # GitHub redelivers for three days: after that, and with no build left, a delivery goes.
    await store.prune(older_than=now, keep_per_repository=100)
    assert await store.known_deliveries(["d-4-days", "d-2-days", "d-with-a-build"]) == {
        "d-2-days",
        "d-with-a-build",  # its build is queued: kept with it
    }


async def test_a_healthy_store_is_writable(store: Store) -> None:
    assert store.writable
    assert store.write_failures == 0
    await store.probe_write()
    await store.probe_write()
    assert store.writable
    assert store.write_failures == 0


async def test_a_result_of_an_earlier_attempt_never_finishes_the_next_one(store: Store) -> None:
    # The daemon lost the build (its lease lapsed), it ran again as attempt 2 under the same
    # owner: attempt 1's late result is fenced off, attempt 2's counts.
    [build_id] = await deliver(store, "d1", request(1))
    [claimed] = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.attempt == 1
    await store.recover_interrupted(everyone_gone)
    [again] = await store.claim_builds(1, OWNER, LEASE)
    assert (again.id, again.attempt) == (build_id, 2)

    assert await store.finish_build(build_id, FAILURE, 2, OWNER, attempt=1) is None
    assert (await state(store, build_id))[0] is BuildState.RUNNING
    await store.finish_build(build_id, SUCCESS, 0, OWNER, attempt=2)
    assert (await state(store, build_id))[0] is BuildState.SUCCESS


# -- logs and secrets shared by nodes -------------------------------------------------------------


async def test_a_shipped_log_reads_back_from_any_offset_and_a_chunk_sent_twice_counts_once(
    store: Store,
) -> None:
    [build_id] = await deliver(store, "d1", request(1))
    await store.append_log(build_id, 1, 0, b"hello ")
    await store.append_log(build_id, 1, 6, b"world\n")
    await store.append_log(build_id, 1, 6, b"world\n")  # the shipper retried after a failure
    assert await store.read_log(build_id, 0) == (1, b"hello world\n")
    assert await store.read_log(build_id, 3) == (1, b"lo world\n")
    assert await store.read_log(build_id, 12) == (1, b"")
    assert await store.read_log(build_id + 1, 0) == (0, b"")


async def test_a_shipped_log_stops_before_a_chunk_not_shipped_yet(store: Store) -> None:
    [build_id] = await deliver(store, "d1", request(1))
    await store.append_log(build_id, 1, 0, b"one\n")
    await store.append_log(build_id, 1, 8, b"three\n")  # "two\n" has not arrived
    assert await store.read_log(build_id, 0) == (1, b"one\n")


async def test_a_build_run_again_starts_its_shipped_log_over(store: Store) -> None:
    [build_id] = await deliver(store, "d1", request(1))
    await store.append_log(build_id, 1, 0, b"first attempt, cut short\n")
    await store.append_log(build_id, 2, 0, b"second\n")
    assert await store.read_log(build_id, 0) == (2, b"second\n")
    # A late chunk of the first attempt never mixes into the second's log.
    await store.append_log(build_id, 1, 25, b"late\n")
    assert await store.read_log(build_id, 0) == (2, b"second\n")


async def test_pruning_a_build_forgets_its_shipped_log(store: Store) -> None:
    [build_id] = await deliver(store, "d1", request(1))
    await run_to_end(store, build_id, SUCCESS)
    await store.append_log(build_id, 1, 0, b"log\n")
    assert await store.prune(older_than=time.time() + 60, keep_per_repository=1) == [build_id]
    assert await store.read_log(build_id, 0) == (0, b"")


async def test_an_installation_secret_is_made_once_and_kept(backend: Backend) -> None:
    first = await backend.open()
    key = await first.installation_secret("session", 32)
    assert len(key) == 32
    assert await first.installation_secret("session", 32) == key
    assert await first.installation_secret("other", 32) != key
    await first.close()
    assert await (await backend.open()).installation_secret("session", 32) == key


async def test_a_delivery_that_fails_in_a_group_commit_leaves_the_others_stored(
    store: Store,
) -> None:
    # Deliveries arriving together are written in one transaction; one the database refuses
    # (here: no event) gets its error, and the others are stored all the same.
    def delivery(n: int, event: Any = "push") -> Delivery:
        return Delivery(f"d-{n}", event, "42", NOW, "accepted", (request(n, branch=f"b{n}"),))

    answers = await asyncio.gather(
        *(store.record_delivery(d) for d in (delivery(1), delivery(2, event=None), delivery(3))),
        return_exceptions=True,
    )
    assert isinstance(answers[1], Exception)
    assert [len(a.build_ids) for a in (answers[0], answers[2])] == [1, 1]  # type: ignore[union-attr]
    assert await queued_count(store) == 2
    assert await store.known_deliveries(["d-1", "d-2", "d-3"]) == {"d-1", "d-3"}


@pytest.mark.parametrize("kind", sorted(BACKENDS))
async def test_deliveries_written_together_end_exactly_as_written_one_after_another(
    kind: str, tmp_path: Path
) -> None:
    # A group commit decides a whole batch in memory and writes it in a few statements; what it
    # leaves must be what the same deliveries leave arriving one at a time: the same builds, the
    # same ends, the same statuses for GitHub, the same running builds asked to stop.
    late = 1_700_000_001.0
    batch = [
        push("b-1", request(1), stop_running=True),  # stops the running build, settles
        push("b-2", request(2)),  # supersedes b-1's build, born in this batch
        push("b-2", request(2)),  # a redelivery inside the batch
        push("d-0", request(0)),  # a redelivery of a delivery stored before
        push("b-3", request(3, branch="feature")),  # supersedes a build GitHub heard of
        push("b-4", pushed(4, late, branch="late")),  # older than the lane's head: born ended
        push("b-5", request(5, job=Job.DEPLOY), request(6, job=Job.DEPLOY)),
        push("b-7", request(7, repository="octo/b"), request(8, pull_request=7)),
        push("b-9", request(1), stop_running=True),  # b-1's commit again, in a new delivery
        push("b-10", pushed(10, late + 10, branch="late"), request(11, job=Job.DEPLOY)),
        push("b-12", pushed(12, late + 8, branch="late")),  # older than b-10's: born ended
    ]

    async def outcome_of(kind: str, folder: str, together: bool) -> tuple[object, ...]:
        async with BACKENDS[kind](tmp_path / folder) as backend:
            store = await backend.open()
            [running] = await deliver(store, "d-0", request(0))
            await store.claim_builds(1, OWNER, LEASE)
            await deliver(store, "d-f", request(50, branch="feature"))
            await deliver(store, "d-d", request(60, job=Job.DEPLOY))
            await deliver(store, "d-l", pushed(70, late + 5, branch="late"))
            await drain(store)  # GitHub hears of every build so far
            if together:
                answers = await asyncio.gather(*map(store.record_delivery, batch))
            else:
                answers = [await store.record_delivery(delivery) for delivery in batch]
            builds = [
                (b.id, b.request.sha, b.job, b.state, b.description)
                for repository in ("octo/app", "octo/b")
                for b in await store.list_builds(repository)
            ]
            stops = await store.heartbeat(OWNER, [running], LEASE)
            posted = [
                (i.build_id, i.sha, i.context, i.status.state, i.status.description)
                for i in await drain(store)
            ]
            await store.close()
            # Not compared: whether a build still settles. Its window is 0.25 s of the real
            # clock from the write, so on a loaded machine one run may see it passed and the
            # other not (the settle rules have tests of their own).
            return tuple(answers), builds, stops, posted

    together = await outcome_of(kind, "together", together=True)
    one_by_one = await outcome_of(kind, "one-by-one", together=False)
    assert together == one_by_one
    answers, builds, stops, posted = together
    # What the scenario is meant to exercise did happen.
    assert sum(answer.duplicate for answer in answers) == 2  # type: ignore[attr-defined]
    assert stops == {1: f"Superseded by {sha(1)[:7]}"}
    assert any(description.startswith("Superseded by") for *_, description in posted)
    assert len(builds) == 4 + 12


async def test_a_node_claims_only_builds_it_can_run(store: Store) -> None:
    # `hobotnica try`'s local repositories live in one node's data directory.
    [here] = await deliver(store, "d1", request(1, repository="octo/app"))
    [elsewhere] = await deliver(store, "d2", request(2, repository="local/project"))

    def can_run(repository: str) -> bool:
        return repository != "local/project"

    assert [b.id for b in await store.claim_builds(2, OWNER, LEASE, can_run)] == [here]
    assert [b.id for b in await store.claim_builds(2, "node-2", LEASE)] == [elsewhere]
