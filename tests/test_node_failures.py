"""Several nodes on one PostgreSQL: what happens to builds when a node is cut off or dies.

The database is real (the session's throwaway cluster); a network split is a loopback proxy
between one node and the database that stops passing bytes (`tests.support.tcp_proxy`).
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable

import pytest

from runner.core.background import BackgroundJobs
from runner.core.models import Build
from runner.scheduling.scheduler import LOST_CONTACT, LeaseTiming, Scheduler
from runner.scheduling.stop import StopRequest
from runner.store import RecoveredBuild, Store
from runner.store.postgresql import PostgresStore
from runner.store.postgresql.connection import PostgresConnection
from tests.support.postgres import session_cluster
from tests.support.stores import deliver, nobody_gone, request
from tests.support.tcp_proxy import SplittableProxy, splittable_proxy

# Short enough for a test; the self-stop (2/3 of the lease) keeps a margin of 2 s.
TIMING = LeaseTiming(lease=6.0, heartbeat=0.3)
# How long the server lets a transaction wait for its next statement: well under the self-stop.
IDLE_IN_TRANSACTION_LIMIT = 1.0
BOUND = 30.0  # every wait in this module ends by then


@pytest.fixture
async def database() -> str:
    return session_cluster().new_database()


@pytest.fixture
async def proxy(database: str) -> AsyncIterator[SplittableProxy]:
    async with splittable_proxy(session_cluster().port) as proxy:
        yield proxy


async def open_node(url: str) -> PostgresStore:
    store = PostgresStore(url, pool_size=2, idle_in_transaction_limit=IDLE_IN_TRANSACTION_LIMIT)
    await store.open()
    return store


def through(proxy: SplittableProxy, database: str) -> str:
    host, _path = database.split("@", 1)[1].split("/", 1)
    return database.replace(host, f"127.0.0.1:{proxy.port}")


async def bounded(step: Awaitable[object]) -> None:
    """A clean-up step that may not hang the test run, whatever state the test left."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(step, BOUND)


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
    cut_off = Node(await open_node(through(proxy, database)), "node-a")
    healthy_store = await open_node(database)
    try:
        [build_id] = await deliver(healthy_store, "d1", request(1))
        cut_off.scheduler.start()
        await asyncio.wait_for(cut_off.first_started.wait(), BOUND)

        proxy.split()
        await asyncio.wait_for(cut_off.first_stopped.wait(), BOUND)
        reason = cut_off.stopped[build_id][1]
        assert reason == LOST_CONTACT

        # The lease has not lapsed yet: no other node may take the build...
        assert await asyncio.wait_for(healthy_store.recover_interrupted(nobody_gone), BOUND) == []
        assert (
            await asyncio.wait_for(healthy_store.claim_builds(1, "node-b", TIMING.lease), BOUND)
            == []
        )
        # ...until it has, and then the build runs again on the healthy node, as its second
        # attempt.
        deadline = time.monotonic() + BOUND
        while not await asyncio.wait_for(healthy_store.recover_interrupted(nobody_gone), BOUND):
            assert time.monotonic() < deadline, "the healthy node never took the build over"
            await asyncio.sleep(0.2)  # polling the store, as the other node's heartbeat does
        taken = await asyncio.wait_for(healthy_store.claim_builds(1, "node-b", TIMING.lease), BOUND)
        assert [(build.id, build.attempt) for build in taken] == [(build_id, 2)]
    finally:
        proxy.heal()
        await bounded(cut_off.scheduler.close(timeout=5))
        await bounded(cut_off.store.close())
        await bounded(healthy_store.close())


async def test_a_node_cut_off_in_the_middle_of_a_transaction_does_not_hold_its_locks(
    database: str, proxy: SplittableProxy
) -> None:
    """The split comes after the node took the lock every claim takes and before it committed:
    the server gives the lock up, and the other nodes go on claiming."""
    cut_off = await open_node(through(proxy, database))
    healthy_store = await open_node(database)
    locked, split = threading.Event(), threading.Event()
    holder: asyncio.Future[None] | None = None

    def hold_the_claim_lock_across_the_split() -> None:
        with (
            cut_off._pool.connection() as raw
        ):  # a transaction the store's own way, stopped half-way
            db = PostgresConnection(raw, begin=True)
            db.lock("claim")
            db.execute("SELECT 1")
            locked.set()
            split.wait(BOUND)
            with contextlib.suppress(Exception):  # the server ended the session meanwhile
                db.commit(None)

    try:
        [build_id] = await deliver(healthy_store, "d1", request(1))
        holder = asyncio.get_running_loop().run_in_executor(
            None, hold_the_claim_lock_across_the_split
        )
        assert await asyncio.to_thread(locked.wait, BOUND)
        proxy.split()
        split.set()

        taken = await asyncio.wait_for(healthy_store.claim_builds(1, "node-b", TIMING.lease), BOUND)
        assert [build.id for build in taken] == [build_id]
    finally:
        split.set()
        proxy.heal()
        if holder is not None:
            await bounded(holder)
        await bounded(cut_off.close())
        await bounded(healthy_store.close())
