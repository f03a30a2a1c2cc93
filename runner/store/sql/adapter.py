"""The store over SQL, whatever the database: each operation one line, the hop written once.

Every operation is a function of `runner.store.sql` over a `Connection`, run by the backend
in a write transaction or as a read (`SQLStore.run`), off the event loop. After a write, what it
committed is announced (`runner.store.announcements`): computed inside the transaction, so a
backend with several nodes can publish it with the commit (PostgreSQL's NOTIFY), and announced
here once the commit is durable. A backend says which of its errors mean "cannot write now";
those become `StoreUnavailable`, and `writable` is False until a write succeeds again.
"""

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from runner.core.errors import StoreUnavailable
from runner.store.announcements import Announcer, Committed
from runner.store.records import Delivery, DeliveryOutcome, RecoveredBuild
from runner.store.sql import (
    announce,
    intake,
    leases,
    listing,
    logs,
    notifications,
    outbox,
    pruning,
    queue,
    registry,
    schedules,
)
from runner.store.sql.connection import Connection

_P = ParamSpec("_P")
_T = TypeVar("_T")

Function = Callable[Concatenate[Connection, _P], _T]
# What an operation committed, from its result and arguments (None: nothing to announce).
Announce = Callable[..., Committed | None]


class _Operation(Generic[_P, _T]):
    """`function(db, …)` as an async method of the store."""

    def __init__(
        self, function: Function[_P, _T], *, write: bool, announce: Announce | None = None
    ) -> None:
        self.function = function
        self.write = write
        self.announce = announce

    @overload
    def __get__(self, store: None, owner: type) -> "_Operation[_P, _T]": ...

    @overload
    def __get__(self, store: "SQLStore", owner: type) -> Callable[_P, Coroutine[Any, Any, _T]]: ...

    def __get__(
        self, store: "SQLStore | None", owner: type
    ) -> "_Operation[_P, _T] | Callable[_P, Coroutine[Any, Any, _T]]":
        if store is None:
            return self

        async def operation(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            return await store.run_announced(
                self.function, self.write, self.announce, *args, **kwargs
            )

        return operation


def _write(function: Function[_P, _T], announce: Announce | None = None) -> _Operation[_P, _T]:
    return _Operation(function, write=True, announce=announce)


def _read(function: Function[_P, _T]) -> _Operation[_P, _T]:
    return _Operation(function, write=False)


class SQLStore(ABC):
    # Whether nodes on other hosts share the store (the embedded one is one host's).
    is_shared = False

    def __init__(self) -> None:
        self.announcements = Announcer()
        self._write_failing = False
        self._write_failures = 0
        # Deliveries waiting for their transaction: appended on the event loop, taken on the
        # backend's thread as the transaction starts (a deque: both ends are thread-safe).
        self._intake: deque[tuple[Delivery, asyncio.Future[DeliveryOutcome]]] = deque()
        # A write of deliveries is on its way to the backend and has not taken its batch yet:
        # a delivery that arrives meanwhile goes with it.
        self._intake_write_waiting = False
        self._intake_writes: set[asyncio.Task[None]] = set()

    @abstractmethod
    async def _call(
        self,
        function: Callable[[Connection], _T],
        write: bool,
        announce: Callable[[_T], Committed | None],
    ) -> tuple[_T, Committed | None]:
        """Run `function` on a connection of the backend, off the loop: in one write
        transaction (with what it committed, published with the commit) or as a read."""

    @abstractmethod
    def _is_unavailable(self, error: BaseException) -> bool:
        """Whether `error` means the database cannot write now (retry later), not a bug."""

    @abstractmethod
    async def close(self) -> None: ...

    async def run(
        self, function: Function[_P, _T], write: bool, *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        return await self.run_announced(function, write, None, *args, **kwargs)

    async def run_announced(
        self,
        function: Function[_P, _T],
        write: bool,
        what: Announce | None,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """The one hop: `function(db, *args)` on the backend; then what it committed, announced."""

        def call(db: Connection) -> _T:
            return function(db, *args, **kwargs)

        def committed(result: _T) -> Committed | None:
            return what(result, *args) if what is not None else None

        try:
            result, done = await self._call(call, write, committed)
        except Exception as error:
            if write and self._is_unavailable(error):
                self._write_failing = True
                self._write_failures += 1
                raise StoreUnavailable(f"the store cannot write now: {error}") from error
            raise
        if write:
            self._write_failing = False
        self.announcements.announce(done)
        return result

    @property
    def writable(self) -> bool:
        """False from a write that failed for want of space (or I/O) until one succeeds."""
        return not self._write_failing

    @property
    def write_failures(self) -> int:
        """How many write transactions failed for want of space (or I/O) since start."""
        return self._write_failures

    # -- deliveries --------------------------------------------------------------------------

    async def record_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        """Persist a delivery (durably) before returning, and queue its builds.

        Group commit: while one intake transaction is being written, deliveries that arrive
        meanwhile wait and go together in the next, behind one commit (one fsync). A lone
        delivery waits for nobody, so low load pays nothing and a burst pays one commit a batch.
        The next transaction is queued on the backend while the one before it is written, and
        takes its batch when it starts: under a burst the store's thread goes from one commit
        to the next without waiting for the event loop, busy answering the batch before, to
        hand it the next (in S3 that wait was most of a 12 ms cycle of 4.6 ms of work).
        """
        answer: asyncio.Future[DeliveryOutcome] = asyncio.get_running_loop().create_future()
        self._intake.append((delivery, answer))
        if not self._intake_write_waiting:
            self._intake_write_waiting = True
            write = asyncio.create_task(self._write_intake(), name="intake-writer")
            self._intake_writes.add(write)
            write.add_done_callback(self._intake_writes.discard)
        return await answer

    async def _write_intake(self) -> None:
        batch: list[tuple[Delivery, asyncio.Future[DeliveryOutcome]]] = []
        taken = False

        def take() -> list[Delivery]:
            """On the backend's thread, as the transaction starts (once: a backend may run a
            transaction again after a deadlock)."""
            nonlocal taken
            if not taken:
                taken = True
                self._intake_write_waiting = False  # before taking: a later one starts a write
                while self._intake:
                    batch.append(self._intake.popleft())
            return [delivery for delivery, _ in batch]

        def record(db: Connection) -> list[DeliveryOutcome | Exception]:
            deliveries = take()
            return intake.record_deliveries(db, deliveries) if deliveries else []

        try:
            answers = await self.run_announced(record, True, announce.recorded_together)
        except Exception as error:  # the transaction itself failed: nothing was stored
            take()  # (the backend failed before starting it: its deliveries are answered too)
            answers = [error] * len(batch)
        except asyncio.CancelledError:  # shutting down: nobody waits unanswered
            take()
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _intake_written(self) -> None:
        """At close: the deliveries already taken are written first."""
        while self._intake_writes:
            await asyncio.wait(set(self._intake_writes))

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
    approve_build = _write(queue.approve, announce.approved)

    async def heartbeat(
        self, owner: str, build_ids: Iterable[int], lease_seconds: float
    ) -> dict[int, str | None]:
        ids = list(build_ids)
        return await self.run(queue.heartbeat, True, owner, ids, lease_seconds) if ids else {}

    async def release(self, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]:
        ids = list(build_ids)
        return await self.run_announced(queue.release, True, announce.recovered, owner, ids)

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
    followers = _read(listing.followers)
    latest_test_build = _read(listing.latest_test)
    latest_build_of_sha = _read(listing.latest_of_sha)
    deploy_branch_seen = _read(listing.deploy_branch)
    state_counts = _read(listing.state_counts)

    # -- build logs, shared secrets ----------------------------------------------------------

    append_log = _write(logs.append, announce.log_appended)
    read_log = _read(logs.read)
    installation_secret = _write(logs.installation_secret)

    # -- notifications -----------------------------------------------------------------------

    next_notification = _read(notifications.next_due)
    notification_sent = _write(notifications.sent)
    notification_settled = _write(notifications.settle)

    # -- scheduled builds --------------------------------------------------------------------

    schedule_seen = _write(schedules.seen)
    schedule_built = _write(schedules.built)

    # -- upkeep ------------------------------------------------------------------------------

    async def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]:
        return await self.run(
            pruning.prune, True, older_than=older_than, keep_per_repository=keep_per_repository
        )

    probe_write = _write(leases.probe)
