"""`BuildControl`: what a person's cancel and re-run do beyond the store's rules.

The store's rules for `cancel_build` and `rerun_build` are part of its contract
(`tests/test_store_contract.py`); here, what `BuildControl` adds: stopping a build that runs in
this daemon, waking the scheduler, and the answer the API and the page show.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.scheduling.control import BuildControl, Cancelled
from runner.store import Store
from tests.support.stores import BACKENDS, LEASE, OWNER, Backend, deliver, request


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


async def test_build_control_stops_here_and_wakes_the_daemon(store: Store) -> None:
    stopped: list[tuple[int, str]] = []
    woken: list[str] = []

    def stop_running(build_id: int, reason: str) -> bool:
        stopped.append((build_id, reason))
        return True

    control = BuildControl(store, stop_running, lambda: woken.append("woken"))
    running, queued = await deliver(store, "d1", request(1, branch="a"), request(2, branch="b"))
    await store.claim_builds(1, OWNER, LEASE)  # one build of a repository at a time: the first

    assert await control.cancel(queued, by="alice") is Cancelled.ENDED
    assert await control.cancel(running, by="alice") is Cancelled.STOPPING
    assert stopped == [(running, "Cancelled by alice")]
    assert await control.cancel(queued, by="alice") is Cancelled.ALREADY_FINISHED
    assert await control.cancel(999, by="alice") is Cancelled.NOT_FOUND
    assert woken == ["woken"]

    answer = await control.rerun(queued, by="alice")
    assert answer.build_id is not None and woken == ["woken", "woken"]
