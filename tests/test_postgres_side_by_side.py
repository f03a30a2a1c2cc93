"""What only the PostgreSQL store can show: transactions of several nodes running side by side.

The behaviour every backend shares is the contract (`tests/test_store_contract.py`). SQLite has
one writer at a time, so two of its transactions never cross; PostgreSQL runs them side by
side, and these tests hold one open at the moment that matters, on a connection of their own
(through the store's own SQL, as another node would run it), while the store under test goes
on.
"""

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from runner.core import statuses
from runner.core.models import BuildState, Job
from runner.store import Delivery, Store
from runner.store.postgresql import PostgresStore
from runner.store.postgresql.connection import PostgresConnection
from runner.store.sql import intake, queue, rows
from tests.support.postgres import session_cluster
from tests.support.stores import LEASE, NOW, REPO, deliver, drain, request, sha

BOUND = 30.0


@pytest.fixture
def database() -> str:
    return session_cluster().new_database()


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    store = PostgresStore(database, pool_size=2)
    await store.open()
    yield store
    await store.close()


async def until_a_transaction_waits_for_a_lock(database: str) -> None:
    """Until some session of the database waits for a lock another holds (bounded)."""
    deadline = time.monotonic() + BOUND
    with psycopg.connect(database, autocommit=True) as watcher:
        while not watcher.execute(
            "SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        ).fetchone():
            assert time.monotonic() < deadline, "nothing waited for a lock"
            await asyncio.sleep(0.01)


async def test_a_status_is_not_handed_out_while_a_delivery_drops_it(
    store: Store, database: str
) -> None:
    """A newer push supersedes a build GitHub never heard of, so its "Queued" is dropped; the
    reporter of another node asks for the next status in the meantime. It must not get the
    dropped one: GitHub would show it, `pending`, for ever, since the build ends silently."""
    [old] = await deliver(store, "d-1", request(1))
    newer = Delivery(
        id="d-2", event="push", hook_id="42", received_at=NOW, outcome="accepted",
        requests=(request(2),),
    )  # fmt: skip
    with psycopg.connect(database, autocommit=True) as other_node:
        with other_node.transaction():
            recorded = intake.record(PostgresConnection(other_node), newer)
            assert recorded.superseded_ids == (old,)
            handing_out = asyncio.create_task(store.next_status(NOW))
            await until_a_transaction_waits_for_a_lock(database)
        async with asyncio.timeout(BOUND):
            item, _ = await handing_out

    [new] = recorded.build_ids
    assert item is not None
    assert (item.build_id, item.sha, item.status) == (new, sha(2), statuses.queued(Job.TEST))
    await store.status_done(item.id, "sent")
    assert await drain(store) == []  # nothing of the superseded build, ever
    assert await store.pending_status_count() == 0


async def test_a_build_two_nodes_recover_at_once_is_recovered_once(
    store: Store, database: str
) -> None:
    """Node A died running a build. Another node recovers it and a third claims it at once
    (attempt 2); this node, which began its own recovery before that committed, must leave
    the build alone: requeuing it would stop attempt 2 and run the build a third time."""
    [build_id] = await deliver(store, "d-1", request(1))
    dead, alive = "node-a/1/dead", "node-b/2/alive"
    [claimed] = await store.claim_builds(1, dead, LEASE)
    assert claimed.id == build_id

    def dead_is_gone(owner: str | None) -> bool:
        return owner == dead

    with psycopg.connect(database, autocommit=True) as other_nodes:
        with other_nodes.transaction():
            db = PostgresConnection(other_nodes)
            assert [b.id for b in queue.recover_interrupted(db, dead_is_gone)] == [build_id]
            assert [b.id for b in queue.claim(db, 1, alive, LEASE)] == [build_id]
            recovering = asyncio.create_task(store.recover_interrupted(dead_is_gone))
            await until_a_transaction_waits_for_a_lock(database)
        async with asyncio.timeout(BOUND):
            recovered = await recovering

    assert recovered == []
    build = await store.get_build(build_id)
    assert build is not None
    assert (build.state, build.attempt) == (BuildState.RUNNING, 2)
    assert await store.heartbeat(alive, [build_id], LEASE) == {build_id: None}  # still B's


async def test_a_delivery_takes_its_repositorys_lock_before_any_row_lock(
    store: Store, database: str
) -> None:
    """Another node's batch of deliveries holds the repository's lock and is about to write
    the repository's hook row; this node records a lone delivery of the same repository. Had
    the lone delivery written the hook row before asking for the repository's lock, each would
    wait for the other (a deadlock PostgreSQL breaks after a second, failing one of them: under
    three nodes' load, webhooks were refused 503). It must wait for the lock, touching nothing."""
    lone = Delivery("d-2", "push", "42", NOW, "accepted", (request(2),), hook_repository=REPO)
    with psycopg.connect(database, autocommit=True) as other_node:
        with other_node.transaction():
            db = PostgresConnection(other_node)
            rows.lock_repositories(db, [REPO])  # as its batch does, first thing
            recording = asyncio.create_task(store.record_delivery(lone))
            await until_a_transaction_waits_for_a_lock(database)
            # The hook row is free: the batch writes it without waiting at all.
            other_node.execute("SET LOCAL lock_timeout = '1ms'")
            intake.record(db, Delivery("d-1", "push", "42", NOW, "accepted", (request(1),),
                                       hook_repository=REPO))  # fmt: skip
        async with asyncio.timeout(BOUND):
            outcome = await recording
    assert len(outcome.build_ids) == 1
