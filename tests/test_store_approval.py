"""Builds that wait for approval, on every store backend (SQLite and PostgreSQL): never claimed
while waiting, holding up none of the repository's builds, approved once."""

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState
from runner.store import Store
from tests.support.stores import BACKENDS, LEASE, OWNER, deliver, drain, request, state


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with BACKENDS[request.param](tmp_path) as backend:
        yield await backend.open()


def fork(n: int) -> BuildRequest:
    return dataclasses.replace(
        request(n, pull_request=7, from_fork=True, branch="patch-1"), needs_approval=True
    )


async def test_a_waiting_build_is_never_claimed_and_holds_nothing_up(store: Store) -> None:
    (waiting,) = await deliver(store, "d1", fork(1))
    (later,) = await deliver(store, "d2", request(2))

    claimed = await store.claim_builds(5, OWNER, LEASE)

    assert [build.id for build in claimed] == [later]
    assert await state(store, waiting) == (BuildState.QUEUED, "Waiting for approval")
    build = await store.get_build(waiting)
    assert build is not None and build.approval == "waiting"
    assert await store.settling_until() is None  # nothing to wake up for
    posted = [(item.build_id, item.status) for item in await drain(store)]
    assert (waiting, statuses.waiting_for_approval()) in posted


async def test_approval_lets_it_run_once_and_only_once(store: Store) -> None:
    (waiting,) = await deliver(store, "d1", fork(1))
    await drain(store)

    assert await store.approve_build(waiting, "alice") is True
    assert await store.approve_build(waiting, "bob") is False  # not waiting any more

    build = await store.get_build(waiting)
    assert build is not None and build.approval == "approved by alice"
    assert [item.status for item in await drain(store)] == [statuses.approved("alice")]
    assert [b.id for b in await store.claim_builds(5, OWNER, LEASE)] == [waiting]
    assert await store.approve_build(999_999, "alice") is None


async def test_a_superseded_waiting_build_cannot_be_approved_and_its_rerun_waits(
    store: Store,
) -> None:
    (first,) = await deliver(store, "d1", fork(1))
    (second,) = await deliver(store, "d2", fork(2))

    assert (await state(store, first))[0] is BuildState.ERROR  # superseded by the newer push
    assert await store.approve_build(first, "alice") is False
    rerun = await store.rerun_build(first)
    assert rerun.build_id is not None
    again = await store.get_build(rerun.build_id)
    assert again is not None and again.approval == "waiting"
    assert await store.claim_builds(5, OWNER, LEASE) == []
    assert (await state(store, second))[0] is BuildState.QUEUED  # still waiting itself
