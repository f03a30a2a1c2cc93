"""Several nodes on one PostgreSQL: what happens to builds when a node is cut off or dies.

The database is real (the session's throwaway cluster); a network split is a loopback proxy
between one node and the database that stops passing bytes (`tests.support.tcp_proxy`).
"""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from runner.core.background import BackgroundJobs
from runner.core.models import Build
from runner.scheduling.scheduler import LOST_CONTACT, LeaseTiming, Scheduler
from runner.scheduling.stop import StopRequest
from runner.store import RecoveredBuild, Store
from runner.store.postgresql import PostgresStore
from tests.support.postgres import session_cluster
from tests.support.stores import deliver, nobody_gone, request
from tests.support.tcp_proxy import SplittableProxy, splittable_proxy

# Short enough for a test; the self-stop (2/3 of the lease) keeps a margin of 2 s.
TIMING = LeaseTiming(lease=6.0, heartbeat=0.3)
BOUND = 30.0  # every wait in this module ends by then


@pytest.fixture
async def database() -> str:
    return session_cluster().new_database()


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[SplittableProxy]:
    async with splittable_proxy(session_cluster().port) as proxy:
        yield proxy


async def open_node(url: str) -> Store:
    store = PostgresStore(url, pool_size=2)
    await store.open()
    return store


class Node:
    """A scheduler whose builds only wait to be stopped, noting when they ran."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.started: dict[int, float] = {}
        self.stopped: dict[int, tuple[float, str | None]] = {}
        self.first_started = asyncio.Event()
        self.first_stopped = asyncio.Event()
        self.jobs = BackgroundJobs()
        self.scheduler = Scheduler(
            store,
            self._run,
            concurrency=1,
            owner=name,
            is_gone=nobody_gone,
            on_recovered=self._recovered,
            jobs=self.jobs,
            timing=TIMING,
        )

    async def _run(self, build: Build, stop: StopRequest) -> None:
        self.started[build.id] = time.monotonic()
        self.first_started.set()
        await stop.wait()
        self.stopped[build.id] = (time.monotonic(), stop.reason)
        self.first_stopped.set()

    async def _recovered(self, _builds: list[RecoveredBuild]) -> None:
        pass


async def test_a_node_cut_off_from_the_database_stops_its_build_before_another_node_takes_it(
    database: str, proxy: SplittableProxy
) -> None:
    host, _path = database.split("@", 1)[1].split("/", 1)
    through_proxy = database.replace(host, f"127.0.0.1:{proxy.port}")
    cut_off = Node(await open_node(through_proxy), "node-a")
    healthy_store = await open_node(database)
    [build_id] = await deliver(healthy_store, "d1", request(1))
    cut_off.scheduler.start()
    await asyncio.wait_for(cut_off.first_started.wait(), BOUND)

    proxy.split()
    await asyncio.wait_for(cut_off.first_stopped.wait(), BOUND)
    reason = cut_off.stopped[build_id][1]
    assert reason == LOST_CONTACT

    # The lease has not lapsed yet: no other node may take the build...
    assert await healthy_store.recover_interrupted(nobody_gone) == []
    assert await healthy_store.claim_builds(1, "node-b", TIMING.lease) == []
    # ...until it has, and then the build runs again on the healthy node, as its second attempt.
    deadline = time.monotonic() + BOUND
    while not await healthy_store.recover_interrupted(nobody_gone):
        assert time.monotonic() < deadline, "the healthy node never took the build over"
        await asyncio.sleep(0.2)  # polling the store, as the other node's heartbeat does
    taken = await healthy_store.claim_builds(1, "node-b", TIMING.lease)
    assert [(build.id, build.attempt) for build in taken] == [(build_id, 2)]

    proxy.heal()
    await cut_off.scheduler.close(timeout=5)
    await cut_off.store.close()
    await healthy_store.close()
