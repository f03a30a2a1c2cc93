"""`BuildControl`: what a person's cancel and re-run do beyond the store's rules.

The store's rules for `cancel_build` and `rerun_build` are part of its contract
(`tests/test_store_contract.py`); here, what people's actions announce (a build that runs in this
daemon stopped, the scheduler woken) and the answer the API and the page show.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.scheduling.control import BuildControl, Cancelled
from runner.store import Store
from runner.store.announcements import Change, Committed
from tests.support.stores import BACKENDS, LEASE, OWNER, Backend, deliver, request


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


async def test_build_control_stops_here_and_wakes_the_daemon(store: Store) -> None:
    # What the scheduler and the reporter hear from the store's announcements: a cancelled
    # queued build ends (and GitHub is told), a cancelled running build is asked to stop, a
    # re-run is queued.
    heard: list[Committed] = []
    store.announcements.subscribe(heard.append)
    control = BuildControl(store)
    running, queued = await deliver(store, "d1", request(1, branch="a"), request(2, branch="b"))
    await store.claim_builds(1, OWNER, LEASE)  # one build of a repository at a time: the first
    heard.clear()

    assert await control.cancel(queued, by="alice") is Cancelled.ENDED
    assert heard[-1].change & Change.ENDED and heard[-1].change & Change.OUTBOX
    assert await control.cancel(running, by="alice") is Cancelled.STOPPING
    assert heard[-1].stops == ((running, "Cancelled by alice"),)
    heard.clear()
    assert await control.cancel(queued, by="alice") is Cancelled.ALREADY_FINISHED
    assert await control.cancel(999, by="alice") is Cancelled.NOT_FOUND
    assert heard == []  # nothing changed: nobody is woken

    answer = await control.rerun(queued, by="alice")
    assert answer.build_id is not None and heard[-1].change & Change.QUEUED
