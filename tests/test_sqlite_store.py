"""What only the SQLite store can show: its file, its rows and its costs.

The behaviour every backend shares is the contract (`tests/test_store_contract.py`); these
tests read what it leaves in the file, through a connection of their own as another process
would: the deliveries' own rows, the outbox ledger (each state written, and whether it was
`sent`, `collapsed` under a newer one, or `dropped` with its superseded build), the test a
deploy follows, and what SQLite does per push.
"""

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from runner.core.errors import StoreUnavailable
from runner.core.models import BuildRequest
from runner.scheduling.control import CANCELLED
from runner.store import Delivery
from runner.store.sqlite import SQLiteStore
from tests.support.stores import (
    LEASE,
    NOW,
    OWNER,
    REPO,
    SUCCESS,
    SQLiteBackend,
    deliver,
    drain,
    everyone_gone,
    post_one,
    query,
    record_delivery,
    request,
    run_to_end,
    sha,
    sqlite_backend,
)

INTERRUPTED = "Interrupted: daemon restarted"
QUEUED = ("pending", "Queued")
RUNNING = ("pending", "Running make test")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    async with sqlite_backend(tmp_path) as backend:
        assert isinstance(backend, SQLiteBackend)
        yield backend


@pytest.fixture
async def store(backend: SQLiteBackend) -> SQLiteStore:
    store = await backend.open()
    assert isinstance(store, SQLiteStore)
    return store


@pytest.fixture
def path(backend: SQLiteBackend) -> Path:
    return backend.path


def outbox(path: Path, build_id: int) -> list[tuple[str, str, str | None]]:
    rows = query(
        path,
        "SELECT state, description, outcome FROM outbox WHERE build_id = ? ORDER BY id",
        build_id,
    )
    return [(row["state"], row["description"], row["outcome"]) for row in rows]


# -- the file ------------------------------------------------------------------------------------


async def test_a_delivery_is_in_the_file_when_it_is_recorded(
    store: SQLiteStore, path: Path
) -> None:
    """Intake answers 2xx once `record_delivery` returns: by then the delivery is committed to
    the write-ahead log, which is fsync'd on every commit."""
    connection = store._database.connection.raw  # type: ignore[attr-defined]
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    await deliver(store, "d-1", request(1))
    assert [row["id"] for row in query(path, "SELECT id FROM deliveries")] == ["d-1"]
    assert await store.integrity_check() == "ok"


async def test_a_delivery_row_keeps_its_event_hook_and_outcome(
    store: SQLiteStore, path: Path
) -> None:
    await deliver(store, "d-1", request(1), request(2, branch="feature"))
    await record_delivery(
        store,
        delivery_id="d-ignored",
        event="issues",
        hook_id=None,
        received_at=NOW,
        outcome="ignored: event",
        requests=[],
    )
    rows = query(path, "SELECT * FROM deliveries ORDER BY id")
    assert [(r["id"], r["event"], r["hook_id"], r["outcome"]) for r in rows] == [
        ("d-1", "push", "42", "accepted"),
        ("d-ignored", "issues", None, "ignored: event"),
    ]
    assert [row["delivery_id"] for row in query(path, "SELECT * FROM builds")] == ["d-1", "d-1"]


async def test_a_deploy_row_names_the_test_it_follows(store: SQLiteStore, path: Path) -> None:
    [test_id] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    deploy_id = await run_to_end(store, test_id)
    assert deploy_id is not None
    [row] = query(path, "SELECT parent_id FROM builds WHERE id = ?", deploy_id)
    assert row["parent_id"] == test_id
    assert outbox(path, deploy_id) == [("pending", "Queued", None)]
    [ctx] = query(path, "SELECT DISTINCT context FROM outbox WHERE build_id = ?", deploy_id)
    assert ctx["context"] == "hobotnica/deploy"
    assert outbox(path, test_id)[-1] == ("success", SUCCESS.description, None)


# -- the outbox ledger ---------------------------------------------------------------------------


async def test_the_ledger_keeps_each_state_and_whether_it_was_sent_or_collapsed(
    store: SQLiteStore, path: Path
) -> None:
    ids = await deliver(store, "d-1", request(1), request(2, branch="feature"))
    for n, build_id in zip((1, 2), ids, strict=True):
        assert outbox(path, build_id) == [(*QUEUED, None)]
        [row] = query(path, "SELECT * FROM outbox WHERE build_id = ?", build_id)
        assert (row["repository"], row["sha"], row["context"]) == (REPO, sha(n), "hobotnica/test")
        assert row["done_at"] is None

    build_id = ids[0]
    await store.claim_builds(1, OWNER, LEASE)
    assert outbox(path, build_id) == [(*QUEUED, None), (*RUNNING, None)]
    await drain(store)
    assert outbox(path, build_id) == [(*QUEUED, "collapsed"), (*RUNNING, "sent")]


async def test_a_retried_state_a_newer_one_replaced_is_collapsed(
    store: SQLiteStore, path: Path
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    item, _ = await store.next_status(NOW)
    assert item is not None
    await store.status_retry(item.id, NOW + 600)
    await store.claim_builds(1, OWNER, LEASE)
    await drain(store, NOW + 600)
    assert outbox(path, build_id) == [(*QUEUED, "collapsed"), (*RUNNING, "sent")]


def pushed(n: int, at: float, branch: str) -> BuildRequest:
    return replace(request(n, branch=branch), pushed_at=at)


async def test_the_states_of_a_build_github_never_heard_of_are_dropped_at_once(
    store: SQLiteStore, path: Path
) -> None:
    [superseded] = await deliver(store, "d-1", request(1))
    await deliver(store, "d-2", request(2))
    assert outbox(path, superseded) == [(*QUEUED, "dropped")]

    await deliver(store, "d-9", pushed(9, 1_700_000_009.0, branch="late"))
    [late] = await deliver(store, "d-8", pushed(8, 1_700_000_008.0, branch="late"))
    assert outbox(path, late) == [(*QUEUED, "dropped")]

    [cancelled] = await deliver(store, "d-3", request(3, branch="cancelled"))
    await store.cancel_build(cancelled, CANCELLED)
    assert [outcome for *_, outcome in outbox(path, cancelled)] == ["dropped"]
    assert query(path, "SELECT * FROM outbox WHERE sha = ? AND outcome = 'sent'", sha(1)) == []


async def test_a_deploy_superseded_before_it_was_announced_is_dropped(
    store: SQLiteStore, path: Path
) -> None:
    [t1] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    await store.claim_builds(1, OWNER, LEASE)
    [t2] = await deliver(store, "d-2", request(2, deploy_after_test=True))
    d1 = await store.finish_build(t1, SUCCESS, 0, OWNER)
    assert d1 is not None
    await run_to_end(store, t2)
    assert outbox(path, d1) == [(*QUEUED, "dropped")]


async def test_a_build_github_heard_of_gets_its_end_into_the_ledger(
    store: SQLiteStore, path: Path
) -> None:
    # Announced, then superseded.
    [announced] = await deliver(store, "d-1", request(1))
    await post_one(store)
    await deliver(store, "d-2", request(2))
    await drain(store)
    superseded = ("error", f"Superseded by {sha(2)[:7]}")
    assert outbox(path, announced) == [(*QUEUED, "sent"), (*superseded, "sent")]

    # Superseded while its "Queued" is being posted.
    [in_flight] = await deliver(store, "d-3", request(3, branch="b"))
    item, _ = await store.next_status(NOW)
    assert item is not None and item.build_id == in_flight
    await deliver(store, "d-4", request(4, branch="b"))
    await store.status_done(item.id, "sent")
    await drain(store)
    superseded = ("error", f"Superseded by {sha(4)[:7]}")
    assert outbox(path, in_flight) == [(*QUEUED, "sent"), (*superseded, "sent")]

    # Cancelled while its "Queued" is being posted.
    [cancelled] = await deliver(store, "d-5", request(5, branch="c"))
    item, _ = await store.next_status(NOW)
    assert item is not None and item.build_id == cancelled
    await store.cancel_build(cancelled, CANCELLED)
    await store.status_done(item.id, "sent")
    await drain(store)
    assert outbox(path, cancelled) == [(*QUEUED, "sent"), ("error", "Cancelled", "sent")]

    # Cancelled after GitHub heard "Queued".
    [heard] = await deliver(store, "d-6", request(6, branch="d"))
    await drain(store)
    await store.cancel_build(heard, CANCELLED)
    assert outbox(path, heard)[-1] == ("error", "Cancelled", None)


async def test_a_dropped_superseded_state_leaves_another_builds_success_sent(
    store: SQLiteStore, path: Path
) -> None:
    [push] = await deliver(store, "d-1", request(1, branch="feature"))
    await deliver(store, "d-2", request(1, branch="feature", pull_request=5))
    await run_to_end(store, push)
    await deliver(store, "d-3", request(2, branch="feature", pull_request=5))
    await drain(store)
    assert outbox(path, push)[-1] == ("success", SUCCESS.description, "sent")


async def test_a_requeued_build_writes_queued_again(
    backend: SQLiteBackend, store: SQLiteStore, path: Path
) -> None:
    [build_id] = await deliver(store, "d-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)
    restarted = await backend.restart(store)
    await restarted.recover_interrupted(everyone_gone)
    assert outbox(path, build_id) == [(*QUEUED, None), (*RUNNING, None), (*QUEUED, None)]


async def test_an_interrupted_deploy_writes_its_error(
    backend: SQLiteBackend, store: SQLiteStore, path: Path
) -> None:
    [test_id] = await deliver(store, "d-1", request(1, deploy_after_test=True))
    deploy_id = await run_to_end(store, test_id)
    assert deploy_id is not None
    await store.claim_builds(1, OWNER, LEASE)
    restarted = await backend.restart(store)
    await restarted.recover_interrupted(everyone_gone)
    assert outbox(path, deploy_id)[-1] == ("error", INTERRUPTED, None)


async def test_deliveries_the_store_cannot_begin_to_write_are_refused_not_left_waiting(
    store: SQLiteStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst whose transaction never starts (the file cannot be written) is answered with
    the store's refusal, each delivery; once it can write, the next delivery is stored."""
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]

    @contextmanager
    def cannot_begin() -> Iterator[None]:
        raise full
        yield

    monkeypatch.setattr(store._database, "transaction", cannot_begin)
    burst = [
        store.record_delivery(Delivery(f"full-{n}", "push", "42", NOW, "accepted", [request(n)]))
        for n in range(5)
    ]
    answers = await asyncio.wait_for(asyncio.gather(*burst, return_exceptions=True), 30)
    assert all(isinstance(answer, StoreUnavailable) for answer in answers), answers
    monkeypatch.undo()
    assert await deliver(store, "after", request(9))
    stored = query(path, "SELECT id FROM deliveries ORDER BY id")
    assert [row["id"] for row in stored] == ["after"]


# -- costs ---------------------------------------------------------------------------------------


async def sqlite_steps(store: SQLiteStore, action: Awaitable[object]) -> int:
    """SQLite VM instructions `action` costs on the store's connection: a count, not a time."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = store._database.connection.raw  # type: ignore[attr-defined]
    connection.set_progress_handler(count, 1)
    try:
        await action
    finally:
        connection.set_progress_handler(None, 1)
    return steps


async def test_a_push_costs_the_same_however_long_its_branchs_history(store: SQLiteStore) -> None:
    """Intake must not scan a lane's history: S3 (2,000 pushes to one branch) went quadratic."""

    def push_request(n: int) -> BuildRequest:
        return replace(request(n), pushed_at=1_700_000_000.0 + n)  # GitHub's push order

    async def burst(numbers: range) -> None:
        # Together: the group commit writes them in one transaction.
        deliveries = [
            Delivery(f"d-{n}", "push", "42", NOW, "accepted", [push_request(n)]) for n in numbers
        ]
        await asyncio.gather(*(store.record_delivery(delivery) for delivery in deliveries))

    async def cost_of_next_push(n: int) -> int:
        return await sqlite_steps(store, deliver(store, f"d-{n}", push_request(n)))

    await burst(range(20))
    short_history = await cost_of_next_push(20)
    await burst(range(21, 1000))
    long_history = await cost_of_next_push(1000)
    assert long_history < short_history * 1.5, (short_history, long_history)
    assert (await store.state_counts())["queued"] == 1  # each push superseded the one before
