"""Every store backend the contract (`tests/test_store_contract.py`) runs against, and the
helpers its tests share.

A backend is done when the contract passes on it: add its entry to `BACKENDS`, an async context
manager that gives a `Backend` on fresh, empty storage and tears it down at the end.
"""

import hashlib
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from pathlib import Path
from typing import Any

from runner.core import statuses
from runner.core.models import BuildRequest, BuildState, Job
from runner.store import Delivery, DeliveryOutcome, OutboxItem, Store
from runner.store.postgresql import PostgresStore
from runner.store.sqlite import SQLiteStore
from tests.support.postgres import session_cluster

REPO = "octo/app"
# The reporter's clock, an hour ahead: every held `pending` state is due by then.
NOW = time.time() + 3600
OWNER = "test-host/1/owner"
LEASE = 30.0

SUCCESS = statuses.succeeded(Job.TEST, 1.5)
FAILURE = statuses.failed(Job.TEST, 2, 1.5)


def everyone_gone(_owner: str | None) -> bool:
    """After a restart on one host: no owner of a running build is alive any more."""
    return True


def nobody_gone(_owner: str | None) -> bool:
    return False


class Backend(ABC):
    """Storage for one test, and the stores opened on it (a restart opens another)."""

    def __init__(self) -> None:
        self._open: list[Store] = []

    @abstractmethod
    async def _connect(self) -> Store: ...

    @abstractmethod
    async def check(self) -> None:
        """The backend's own consistency checks, on its storage after every store closed."""

    async def open(self) -> Store:
        store = await self._connect()
        self._open.append(store)
        return store

    async def restart(self, store: Store) -> Store:
        """The daemon stops (builds it ran are left running) and a new one opens the storage."""
        self._open.remove(store)
        await store.close()
        return await self.open()

    async def close(self) -> None:
        while self._open:
            await self._open.pop().close()


class SQLiteBackend(Backend):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def _connect(self) -> Store:
        return SQLiteStore(self.path)

    async def check(self) -> None:
        assert [tuple(row) for row in query(self.path, "PRAGMA integrity_check")] == [("ok",)]
        assert query(self.path, "PRAGMA foreign_key_check") == []


@asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = SQLiteBackend(tmp_path / "var" / "hobotnica.sqlite3")
    try:
        yield backend
    finally:
        await backend.close()
    await backend.check()


class PostgresBackend(Backend):
    """A database of its own in the session's throwaway PostgreSQL cluster."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def _connect(self) -> Store:
        store = PostgresStore(self.url, pool_size=4)
        await store.open()
        return store

    async def check(self) -> None:
        """PostgreSQL keeps its own consistency; nothing to add."""


@asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    backend = PostgresBackend(session_cluster().new_database())
    try:
        yield backend
    finally:
        await backend.close()


BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Backend]]] = {
    "sqlite": sqlite_backend,
    "postgresql": postgres_backend,
}


def query(path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read a SQLite file through a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, args).fetchall()


# -- builds and deliveries -----------------------------------------------------------------------


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()  # noqa: S324 - a commit id, not security


def request(
    n: int,
    *,
    repository: str = REPO,
    branch: str = "main",
    job: Job = Job.TEST,
    deploy_after_test: bool = False,
    from_fork: bool = False,
    pull_request: int | None = None,
) -> BuildRequest:
    ref = f"refs/pull/{pull_request}/head" if pull_request else f"refs/heads/{branch}"
    return BuildRequest(
        repository=repository,
        sha=sha(n),
        ref=ref,
        branch=branch,
        job=job,
        pull_request=pull_request,
        from_fork=from_fork,
        deploy_after_test=deploy_after_test,
        message=f"commit {n}",
        author="octocat",
    )


async def record_delivery(
    store: Store,
    *,
    delivery_id: str,
    event: str,
    hook_id: str | None,
    received_at: float,
    outcome: str,
    requests: Sequence[BuildRequest] = (),
    hook_repository: str | None = None,
) -> DeliveryOutcome:
    delivery = Delivery(
        id=delivery_id,
        event=event,
        hook_id=hook_id,
        received_at=received_at,
        outcome=outcome,
        requests=tuple(requests),
        hook_repository=hook_repository,
    )
    return await store.record_delivery(delivery)


async def deliver(store: Store, delivery: str, *requests: BuildRequest) -> tuple[int, ...]:
    """A push delivery that is new: the ids of the builds it queued."""
    outcome = await record_delivery(
        store,
        delivery_id=delivery,
        event="push",
        hook_id="42",
        received_at=NOW,
        outcome="accepted",
        requests=requests,
    )
    assert not outcome.duplicate
    return outcome.build_ids


async def state(store: Store, build_id: int) -> tuple[BuildState, str]:
    build = await store.get_build(build_id)
    assert build is not None
    return build.state, build.description


async def run_to_end(store: Store, build_id: int, status: statuses.Status = SUCCESS) -> int | None:
    """Claim `build_id` (the repository's next build) and finish it; the deploy it unlocks."""
    (claimed,) = await store.claim_builds(1, OWNER, LEASE)
    assert claimed.id == build_id
    return await store.finish_build(build_id, status, 0, OWNER)


# -- the outbox ----------------------------------------------------------------------------------


async def post_one(store: Store, now: float = NOW) -> OutboxItem:
    """The next status the reporter posts, marked sent."""
    item, retry_at = await store.next_status(now)
    assert item is not None and retry_at is None
    await store.status_done(item.id, "sent")
    return item


async def drain(store: Store, now: float = NOW) -> list[OutboxItem]:
    """Every status the reporter would post now, each marked sent."""
    sent: list[OutboxItem] = []
    while True:
        item, retry_at = await store.next_status(now)
        if item is None:
            assert retry_at is None
            return sent
        sent.append(item)
        await store.status_done(item.id, "sent")
