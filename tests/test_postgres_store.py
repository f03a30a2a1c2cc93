"""What only the PostgreSQL store does: carry what one node commits to the others.

Two stores on one database are two nodes. Each announces what it commits itself; what another
node commits arrives by LISTEN/NOTIFY (sent inside the committing transaction), and after the
listener's connection is lost and made again, everything is announced, since notifications sent
meanwhile are gone.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from runner.store import Delivery
from runner.store.announcements import Change, Committed
from runner.store.postgresql import EVERYTHING, PostgresStore
from runner.store.postgresql.connection import PostgresConnection
from tests.support.postgres import session_cluster
from tests.support.stores import LEASE, NOW, OWNER, deliver, request, sha

BOUND = 30.0  # every wait here ends by then


class Heard:
    """What a node's store announces, to wait for."""

    def __init__(self, store: PostgresStore) -> None:
        self.all: list[Committed] = []
        self._changed = asyncio.Event()
        store.announcements.subscribe(self._hear)

    def _hear(self, committed: Committed) -> None:
        self.all.append(committed)
        self._changed.set()

    async def first(self, matches: Callable[[Committed], bool]) -> Committed:
        async with asyncio.timeout(BOUND):
            while True:
                found = next((c for c in self.all if matches(c)), None)
                if found is not None:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def listening(self) -> None:
        """Until the listener is connected (it announces everything then); forgets all heard."""
        await self.first(lambda c: c.change == EVERYTHING)
        self.all.clear()


@pytest.fixture
async def database() -> str:
    return session_cluster().new_database()


Node = tuple[PostgresStore, Heard]


@pytest.fixture
async def two_nodes(database: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes, listening to each other."""
    nodes = []
    for _ in range(2):
        store = PostgresStore(database, pool_size=2)
        heard = Heard(store)  # before it opens: its listener announces when it is connected
        await store.open()
        await heard.listening()
        nodes.append((store, heard))
    yield nodes[0], nodes[1]
    for store, _ in nodes:
        await store.close()


async def test_a_build_queued_on_one_node_wakes_the_other(
    two_nodes: tuple[Node, Node],
) -> None:
    (node_a, heard_a), (node_b, heard_b) = two_nodes

    await deliver(node_a, "d1", request(1))

    await heard_b.first(lambda c: bool(c.change & Change.QUEUED))
    # Node A announced its own commit once, when it committed, and not again when its own
    # notification came back (B's delivery below is what A hears next).
    await deliver(node_b, "d2", request(2, repository="octo/other"))
    await heard_a.first(lambda c: len(heard_a.all) >= 2)
    assert [bool(c.change & Change.QUEUED) for c in heard_a.all] == [True, True]


async def test_a_push_on_one_node_stops_a_build_running_on_the_other(
    two_nodes: tuple[Node, Node],
) -> None:
    (node_a, heard_a), (node_b, _) = two_nodes
    [running] = await deliver(node_a, "d1", request(1))
    await node_a.claim_builds(1, OWNER, LEASE)  # node A runs it

    newer = Delivery("d2", "push", "42", NOW, "accepted", (request(2),), stop_running=True)
    await node_b.record_delivery(newer)

    stop = await heard_a.first(lambda c: any(build_id == running for build_id, _ in c.stops))
    assert stop.stops == ((running, f"Superseded by {sha(2)[:7]}"),)


async def test_a_node_whose_listener_reconnects_looks_at_everything_again(
    database: str, two_nodes: tuple[Node, Node]
) -> None:
    _, (_, heard_b) = two_nodes

    # The database ends both nodes' listening sessions (a restart, a network blip, an operator).
    ended = session_cluster().psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE query LIKE 'LISTEN %' AND datname = current_database()",
        database=database.rsplit("/", 1)[1],
    )
    assert ended.strip() == "2"

    await heard_b.first(lambda c: c.change == EVERYTHING)


async def test_a_write_sent_with_the_next_statement_that_fails_fails_its_transaction() -> None:
    # On PostgreSQL a write that answers nothing waits to go with the next statement (one round
    # trip). If it fails, the transaction fails where that statement is sent, and none of it is
    # kept: what a store operation writes is all or nothing, as on SQLite.
    url = session_cluster().new_database()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE kept (name text NOT NULL)")
        db = PostgresConnection(raw, begin=True)
        db.executemany("INSERT INTO kept (name) VALUES (?)", [("first",)])
        db.executemany("INSERT INTO kept (name) VALUES (?)", [("second",), (None,)])
        with pytest.raises(psycopg.errors.NotNullViolation):
            db.execute("SELECT count(*) FROM kept")
        db.rollback()
        assert raw.execute("SELECT count(*) FROM kept").fetchone() == (0,)

        db = PostgresConnection(raw, begin=True)
        db.executemany("INSERT INTO kept (name) VALUES (?)", [("third",)])
        assert db.execute("SELECT count(*) FROM kept").fetchone()[0] == 1  # in its transaction
        db.commit(None)
        assert raw.execute("SELECT name FROM kept").fetchall() == [("third",)]


def test_a_lock_sent_with_the_next_statement_holds_from_that_statement_on() -> None:
    # A lock waits to go with the transaction's next statement (no round trip of its own);
    # from that statement on it serialises as a lock taken alone would: the second
    # transaction's read waits for the first one's commit, and sees what it wrote.
    url = session_cluster().new_database()
    with (
        psycopg.connect(url, autocommit=True) as first_raw,
        psycopg.connect(url, autocommit=True) as second_raw,
        psycopg.connect(url, autocommit=True) as watch,
    ):
        first_raw.execute("CREATE TABLE written (name text NOT NULL)")
        first = PostgresConnection(first_raw, begin=True)
        first.lock("owner/repository")
        first.execute("SELECT 1")  # the lock went with it

        def second_reads() -> int:
            second = PostgresConnection(second_raw, begin=True)
            second.lock("owner/repository")
            found = int(second.execute("SELECT count(*) FROM written").fetchone()[0])
            second.commit(None)
            return found

        with ThreadPoolExecutor(max_workers=1) as thread:
            reading = thread.submit(second_reads)
            deadline = time.monotonic() + BOUND
            while not watch.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone():
                assert time.monotonic() < deadline, "the second transaction never waited"
                assert not reading.done(), "the second transaction did not wait for the lock"
            first.executemany("INSERT INTO written (name) VALUES (?)", [("first",)])
            first.commit(None)
            assert reading.result(timeout=BOUND) == 1
