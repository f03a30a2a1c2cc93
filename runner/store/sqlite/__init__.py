"""The SQLite store: the embedded default, one file under the data directory.

SQLite calls (and their fsyncs) block, so every operation runs on one dedicated thread, never on
the event loop; one thread also means one connection and no lock juggling inside the process
(a second blue/green instance is serialised by SQLite's own locking). That hop is written once,
in `_Operation`: each line of `SQLiteStore` names a function over a connection and whether it
writes (one `BEGIN IMMEDIATE` transaction) or reads.

Deliveries are group-committed: while one intake transaction is being written, deliveries that
arrive meanwhile wait and go together in the next transaction, behind one fsync. A lone
delivery waits for nobody, so low load pays nothing and a burst pays one fsync per batch.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from runner.core.errors import StoreUnavailable
from runner.store.announcements import Announcer, Committed
from runner.store.records import Delivery, DeliveryOutcome, RecoveredBuild
from runner.store.sqlite import (
    announce,
    database,
    intake,
    leases,
    listing,
    outbox,
    pruning,
    queue,
    registry,
)
from runner.store.sqlite.database import Database, database_path, is_unavailable

__all__ = ["SQLiteStore", "database_path"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


# What an operation committed, from its result and arguments (None: nothing to announce).
Announce = Callable[..., Committed | None]


class _Operation(Generic[_P, _T]):
    """`function(db, …)` as an async method of the store: on its thread, in a write transaction
    or as a read; after a write, what it committed is announced. A backend that cannot write
    raises `StoreUnavailable`."""

    def __init__(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *,
        write: bool,
        announce: Announce | None = None,
    ) -> None:
        self.function = function
        self.write = write
        self.announce = announce

    @overload
    def __get__(self, store: None, owner: type) -> "_Operation[_P, _T]": ...

    @overload
    def __get__(
        self, store: "SQLiteStore", owner: type
    ) -> Callable[_P, Coroutine[Any, Any, _T]]: ...

    def __get__(
        self, store: "SQLiteStore | None", owner: type
    ) -> "_Operation[_P, _T] | Callable[_P, Coroutine[Any, Any, _T]]":
        if store is None:
            return self

        async def operation(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            result = await store.run(self.function, self.write, *args, **kwargs)
            if self.announce is not None and (committed := self.announce(result, *args)):
                store.announcements.announce(committed)
            return result

        return operation


def _write(
    function: Callable[Concatenate[sqlite3.Connection, _P], _T], announce: Announce | None = None
) -> _Operation[_P, _T]:
    return _Operation(function, write=True, announce=announce)


def _read(function: Callable[Concatenate[sqlite3.Connection, _P], _T]) -> _Operation[_P, _T]:
    return _Operation(function, write=False)


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._database = Database(path)
        self._intake: list[tuple[Delivery, asyncio.Future[DeliveryOutcome]]] = []
        self._intake_writer: asyncio.Task[None] | None = None
        self.announcements = Announcer()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "SQLiteStore":
        return cls(database_path(data_dir))

    async def run(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        write: bool,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """The one hop to the store's thread."""

        def call() -> _T:
            if not write:
                return function(self._database.connection, *args, **kwargs)
            with self._database.transaction() as db:
                return function(db, *args, **kwargs)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, call)
        except Exception as error:
            if is_unavailable(error):
                raise StoreUnavailable(f"the store cannot write now: {error}") from error
            raise

    async def close(self) -> None:
        if self._intake_writer is not None:
            await self._intake_writer
        await asyncio.get_running_loop().run_in_executor(self._thread, self._database.close)
        self._thread.shutdown(wait=True)

    # -- deliveries (group commit) -----------------------------------------------------------

    async def record_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        """Persist a delivery (durably, fsync'd) before returning; see the group commit above."""
        answer: asyncio.Future[DeliveryOutcome] = asyncio.get_running_loop().create_future()
        self._intake.append((delivery, answer))
        if self._intake_writer is None or self._intake_writer.done():
            self._intake_writer = asyncio.create_task(self._write_intake(), name="intake-writer")
        return await answer

    async def _write_intake(self) -> None:
        while self._intake:
            batch, self._intake = self._intake, []
            try:
                answers = await self.run(
                    intake.record_deliveries, True, [delivery for delivery, _ in batch]
                )
            except Exception as error:  # the transaction itself failed: nothing was stored
                answers = [error] * len(batch)
            except asyncio.CancelledError:  # shutting down: nobody waits unanswered
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), answer in zip(batch, answers, strict=True):
                if not isinstance(answer, Exception):
                    self.announcements.announce(announce.recorded(answer))
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    known_deliveries = _read(intake.known_deliveries)
    hooks = _read(intake.hooks)
    set_hook_checked = _write(intake.set_hook_checked)

    # -- the build queue ---------------------------------------------------------------------

    claim_builds = _write(queue.claim, announce.claimed)
    settling_until = _read(queue.settling_until)
    finish_build = _write(queue.finish, announce.finished)
    set_commit_info = _write(queue.set_commit_info)
    recover_interrupted = _write(queue.recover_interrupted, announce.recovered)
    cancel_build = _write(queue.cancel, announce.cancelled)
    rerun_build = _write(queue.rerun, announce.rerun)

    async def heartbeat(
        self, owner: str, build_ids: Iterable[int], lease_seconds: float
    ) -> dict[int, str | None]:
        ids = list(build_ids)
        return await self.run(queue.heartbeat, True, owner, ids, lease_seconds) if ids else {}

    async def release(self, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]:
        released = await self.run(queue.release, True, owner, list(build_ids))
        self.announcements.announce(announce.recovered(released))
        return released

    # -- leases ------------------------------------------------------------------------------

    acquire_lease = _write(leases.acquire)
    pause = _write(leases.pause)
    paused_until = _read(leases.paused_until)
    drop_lease = _write(leases.drop)

    # -- the status outbox -------------------------------------------------------------------

    next_status = _write(outbox.next_item)
    status_done = _write(outbox.mark)
    status_retry = _write(outbox.retry)
    pending_status_count = _read(outbox.pending_count)

    # -- registrations -----------------------------------------------------------------------

    registration = _read(registry.get)
    registration_by_webhook = _read(registry.by_webhook_uid)
    registrations = _read(registry.all_registered)
    status_token = _read(registry.status_token)
    register = _write(registry.register)
    set_registration_status = _write(registry.set_status)
    disable_registration = _write(registry.disable, announce.disabled)
    update_registration = _write(registry.update_settings)
    set_registration_hook = _write(registry.set_hook_id)
    access_checked = _write(registry.access_checked)
    remove_registration = _write(registry.remove, announce.removed)
    variables = _read(registry.variables)
    build_variables = _read(registry.build_variables)
    registration_with_variables = _read(registry.with_build_variables)
    replace_env = _write(registry.replace_env)
    put_secret = _write(registry.put_secret)
    delete_secret = _write(registry.delete_secret)

    # -- listings ----------------------------------------------------------------------------

    get_build = _read(listing.by_id)
    get_builds = _read(listing.by_ids)
    repositories_with_builds = _read(listing.repositories)
    latest_per_lane = _read(listing.latest_per_lane)
    active_builds = _read(listing.active)
    list_builds = _read(listing.page)
    latest_test_build = _read(listing.latest_test)
    latest_build_of_sha = _read(listing.latest_of_sha)
    deploy_branch_seen = _read(listing.deploy_branch)
    state_counts = _read(listing.state_counts)

    # -- upkeep ------------------------------------------------------------------------------

    async def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]:
        pruned = await self.run(
            pruning.prune, True, older_than=older_than, keep_per_repository=keep_per_repository
        )
        await self.run(pruning.give_space_back, False)
        return pruned

    probe_write = _write(database.probe_write)
    integrity_check = _read(database.integrity_check)

    @property
    def writable(self) -> bool:
        """False from a write that failed for want of space (or I/O) until one succeeds."""
        return not self._database.write_failing

    @property
    def write_failures(self) -> int:
        """How many write transactions failed for want of space (or I/O) since start."""
        return self._database.write_failures
