"""Cancel and re-run: the store's rules (`cancel_build`, `rerun_build`) and `BuildControl`."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runner.core import statuses
from runner.core.models import BuildState, Job
from runner.scheduling.control import CANCELLED, BuildControl, Cancelled
from runner.store import Store
from runner.store.sqlite import SQLiteStore
from tests.test_store import (
    LEASE,
    NOW,
    OWNER,
    SUCCESS,
    assert_integrity,
    deliver,
    drain,
    outbox,
    request,
    sha,
    state,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "hobotnica.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()
    assert_integrity(path)


def run_to_end(store: SQLiteStore, build_id: int, status: statuses.Status = SUCCESS) -> int | None:
    (claimed,) = store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == build_id
    return store.finish_build(build_id, status, 0, OWNER)


# -- cancel ----------------------------------------------------------------------------------


def test_cancelling_a_queued_build_ends_it_and_tells_github(store: SQLiteStore, path: Path) -> None:
    (build_id,) = deliver(store, "d1", request(1))
    drain(store)  # GitHub heard "Queued"

    assert store.cancel_build(build_id, CANCELLED) is BuildState.QUEUED

    assert state(store, build_id) == (BuildState.ERROR, "Cancelled")
    assert outbox(path, build_id)[-1] == ("error", "Cancelled", None)
    assert store.claim_builds(1, OWNER, LEASE) == []


def test_a_queued_build_github_never_heard_of_ends_silently(store: SQLiteStore, path: Path) -> None:
    (build_id,) = deliver(store, "d1", request(1))

    store.cancel_build(build_id, CANCELLED)

    assert state(store, build_id) == (BuildState.ERROR, "Cancelled")
    assert [outcome for *_, outcome in outbox(path, build_id)] == ["dropped"]


def test_a_build_cancelled_while_its_pending_is_in_flight_tells_github(
    store: SQLiteStore, path: Path
) -> None:
    """ "Queued" is being posted when the build is cancelled: GitHub will have heard of it, so
    it must hear that it ended, or the commit shows `pending` for ever."""
    (build_id,) = deliver(store, "d1", request(1))
    in_flight, _ = store.next_status(NOW)
    assert in_flight is not None and in_flight.build_id == build_id

    store.cancel_build(build_id, CANCELLED)
    store.status_done(in_flight.id, "sent")  # GitHub answers the post in flight

    assert [(item.build_id, item.status) for item in drain(store)] == [
        (build_id, statuses.errored("Cancelled"))
    ]
    assert outbox(path, build_id) == [
        ("pending", "Queued", "sent"),
        ("error", "Cancelled", "sent"),
    ]


def test_cancelling_a_running_build_asks_its_daemon_to_stop(store: SQLiteStore) -> None:
    (build_id,) = deliver(store, "d1", request(1))
    store.claim_builds(1, OWNER, LEASE)

    assert store.cancel_build(build_id, CANCELLED) is BuildState.RUNNING

    assert state(store, build_id)[0] is BuildState.RUNNING
    assert store.heartbeat(OWNER, [build_id], LEASE) == {build_id: CANCELLED}


def test_cancelling_a_finished_or_unknown_build_changes_nothing(store: SQLiteStore) -> None:
    (build_id,) = deliver(store, "d1", request(1))
    run_to_end(store, build_id)

    assert store.cancel_build(build_id, CANCELLED) is BuildState.SUCCESS
    assert state(store, build_id)[0] is BuildState.SUCCESS
    assert store.cancel_build(999, CANCELLED) is None


# -- re-run ----------------------------------------------------------------------------------


def test_a_rerun_is_a_new_build_of_the_same_commit_and_lane(store: SQLiteStore) -> None:
    (first,) = deliver(store, "d1", request(1, branch="feature"))
    run_to_end(store, first, statuses.failed(Job.TEST, 2, 1.0))

    again = store.rerun_build(first)

    assert again.build_id is not None and again.build_id != first
    old, new = store.get_build(first), store.get_build(again.build_id)
    assert old is not None and new is not None
    assert (new.state, new.description, new.delivery_id) == (BuildState.QUEUED, "Queued", None)
    assert new.request == old.request


def test_a_rerun_supersedes_nothing(store: SQLiteStore) -> None:
    (old,) = deliver(store, "d1", request(1))
    run_to_end(store, old)
    (newer,) = deliver(store, "d2", request(2))  # queued, same branch

    assert store.rerun_build(old).build_id is not None
    assert state(store, newer)[0] is BuildState.QUEUED


def test_an_unfinished_build_is_not_rerun(store: SQLiteStore) -> None:
    (build_id,) = deliver(store, "d1", request(1))

    assert store.rerun_build(build_id).refused == "the build has not finished"
    assert store.rerun_build(999).refused == "no such build"


def test_rerunning_a_deploy_tests_first_then_deploys(store: SQLiteStore) -> None:
    (test_id,) = deliver(store, "d1", request(1, deploy_after_test=True))
    deploy_id = run_to_end(store, test_id)
    assert deploy_id is not None
    run_to_end(store, deploy_id)

    again = store.rerun_build(deploy_id)

    assert again.build_id is not None
    rerun = store.get_build(again.build_id)
    assert rerun is not None
    assert (rerun.job, rerun.request.deploy_after_test, rerun.sha) == (Job.TEST, True, sha(1))
    redeploy = run_to_end(store, again.build_id)
    assert redeploy is not None and store.get_build(redeploy) is not None


def test_a_deploy_is_not_rerun_once_a_later_push_is_deployed_or_on_its_way(
    store: SQLiteStore,
) -> None:
    (old_test,) = deliver(store, "d1", request(1, deploy_after_test=True))
    old_deploy = run_to_end(store, old_test)
    assert old_deploy is not None
    run_to_end(store, old_deploy)
    (new_test,) = deliver(store, "d2", request(2, deploy_after_test=True))

    # The later push's tests are queued, a deploy after them: going back would race it.
    refused = store.rerun_build(old_deploy)
    assert refused.build_id is None
    assert refused.refused == "a later push of this repository is deployed or on its way"
    # A re-run of the old test still tests, and deploys nothing.
    test_again = store.rerun_build(old_test)
    assert test_again.build_id is not None
    rerun = store.get_build(test_again.build_id)
    assert rerun is not None and not rerun.request.deploy_after_test

    new_deploy = run_to_end(store, new_test)
    assert new_deploy is not None
    run_to_end(store, test_again.build_id)
    run_to_end(store, new_deploy)
    assert store.rerun_build(old_deploy).build_id is None  # the later push is deployed
    assert store.rerun_build(new_deploy).build_id is not None  # the newest may go again


# -- BuildControl ----------------------------------------------------------------------------


@pytest.fixture
async def async_store(path: Path) -> AsyncIterator[Store]:
    store = Store(path)
    yield store
    await store.close()


async def test_build_control_stops_here_and_wakes_the_daemon(async_store: Store) -> None:
    stopped: list[tuple[int, str]] = []
    woken: list[str] = []

    def stop_running(build_id: int, reason: str) -> bool:
        stopped.append((build_id, reason))
        return True

    control = BuildControl(async_store, stop_running, lambda: woken.append("woken"))
    backend = async_store._backend
    running, queued = deliver(backend, "d1", request(1, branch="a"), request(2, branch="b"))
    backend.claim_builds(1, OWNER, LEASE)  # one build of a repository at a time: the first

    assert await control.cancel(queued, by="alice") is Cancelled.ENDED
    assert await control.cancel(running, by="alice") is Cancelled.STOPPING
    assert stopped == [(running, "Cancelled by alice")]
    assert await control.cancel(queued, by="alice") is Cancelled.ALREADY_FINISHED
    assert await control.cancel(999, by="alice") is Cancelled.NOT_FOUND
    assert woken == ["woken"]

    answer = await control.rerun(queued, by="alice")
    assert answer.build_id is not None and woken == ["woken", "woken"]
