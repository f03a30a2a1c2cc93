"""The store as the rest of the daemon sees it: async methods over a synchronous backend.

SQLite calls (and their fsyncs) block, so they run on one dedicated thread, never on the event
loop. One thread also means one connection and no lock juggling inside the process; other
processes (a second blue/green instance) are serialised by SQLite's own locking.

Deliveries are group-committed: while one intake transaction is being written, deliveries that
arrive meanwhile wait and go together in the next transaction, behind one fsync. A lone delivery
waits for nobody, so low load pays nothing and a burst pays one fsync per batch.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from runner.core.errors import StoreUnavailable
from runner.core.models import Build, BuildState
from runner.core.statuses import Status
from runner.store.sqlite import (
    Delivery,
    DeliveryOutcome,
    Hook,
    OutboxItem,
    RecoveredBuild,
    Rerun,
    SQLiteStore,
    database_path,
    is_unavailable,
)

__all__ = [
    "Delivery",
    "DeliveryOutcome",
    "Hook",
    "OutboxItem",
    "RecoveredBuild",
    "Rerun",
    "Store",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Store:
    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._backend = SQLiteStore(path)
        self._intake: list[tuple[Delivery, asyncio.Future[DeliveryOutcome]]] = []
        self._intake_writer: asyncio.Task[None] | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "Store":
        return cls(database_path(data_dir))

    async def _run(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, lambda: function(*args, **kwargs))
        except Exception as error:
            if is_unavailable(error):
                raise StoreUnavailable(f"the store cannot write now: {error}") from error
            raise

    @property
    def writable(self) -> bool:
        """False from a write that failed for want of space (or I/O) until one succeeds."""
        return not self._backend.write_failing

    @property
    def write_failures(self) -> int:
        """How many write transactions failed for want of space (or I/O) since start."""
        return self._backend.write_failures

    async def probe_write(self) -> None:
        await self._run(self._backend.probe_write)

    async def close(self) -> None:
        if self._intake_writer is not None:
            await self._intake_writer
        await self._run(self._backend.close)
        self._thread.shutdown(wait=True)

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
                answers = await self._run(
                    self._backend.record_deliveries, [delivery for delivery, _ in batch]
                )
            except Exception as error:  # the transaction itself failed: nothing was stored
                answers = [error] * len(batch)
            except asyncio.CancelledError:  # shutting down: nobody waits unanswered
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

    async def claim_builds(self, limit: int, owner: str, lease_seconds: float) -> list[Build]:
        return await self._run(self._backend.claim_builds, limit, owner, lease_seconds)

    async def settling_until(self) -> float | None:
        return await self._run(self._backend.settling_until)

    async def heartbeat(
        self, owner: str, build_ids: Iterable[int], lease_seconds: float
    ) -> dict[int, str | None]:
        return await self._run(self._backend.heartbeat, owner, list(build_ids), lease_seconds)

    async def finish_build(
        self, build_id: int, status: Status, exit_code: int | None, owner: str
    ) -> int | None:
        return await self._run(self._backend.finish_build, build_id, status, exit_code, owner)

    async def set_commit_info(self, build_id: int, message: str, author: str) -> None:
        await self._run(self._backend.set_commit_info, build_id, message, author)

    async def recover_interrupted(
        self, is_gone: Callable[[str | None], bool]
    ) -> list[RecoveredBuild]:
        return await self._run(self._backend.recover_interrupted, is_gone)

    async def release(self, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]:
        return await self._run(self._backend.release, owner, list(build_ids))

    async def acquire_lease(
        self, name: str, owner: str, seconds: float, is_gone: Callable[[str | None], bool]
    ) -> bool:
        return await self._run(self._backend.acquire_lease, name, owner, seconds, is_gone)

    async def pause(self, name: str, until: float) -> None:
        await self._run(self._backend.pause, name, until)

    async def paused_until(self, name: str) -> float:
        return await self._run(self._backend.paused_until, name)

    async def drop_lease(self, name: str, owner: str) -> None:
        await self._run(self._backend.drop_lease, name, owner)

    async def get_build(self, build_id: int) -> Build | None:
        return await self._run(self._backend.get_build, build_id)

    async def get_builds(self, build_ids: Iterable[int]) -> dict[int, Build]:
        return await self._run(self._backend.get_builds, list(build_ids))

    async def cancel_build(self, build_id: int, reason: str) -> BuildState | None:
        return await self._run(self._backend.cancel_build, build_id, reason)

    async def rerun_build(self, build_id: int) -> Rerun:
        return await self._run(self._backend.rerun_build, build_id)

    async def repositories_with_builds(self) -> list[str]:
        return await self._run(self._backend.repositories_with_builds)

    async def latest_per_lane(
        self, repositories: Iterable[str], limit: int
    ) -> dict[str, list[Build]]:
        """The newest build of each lane, for several repositories in one trip to the thread."""
        names = list(repositories)

        def read() -> dict[str, list[Build]]:
            return {name: self._backend.latest_per_lane(name, limit) for name in names}

        return await self._run(read)

    async def active_builds(self, limit: int) -> list[Build]:
        return await self._run(self._backend.active_builds, limit)

    async def list_builds(
        self,
        repository: str,
        *,
        branch: str | None = None,
        state: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Build]:
        return await self._run(
            self._backend.list_builds,
            repository,
            branch=branch,
            state=state,
            before=before,
            limit=limit,
        )

    async def latest_test_build(self, repository: str, branch: str) -> Build | None:
        return await self._run(self._backend.latest_test_build, repository, branch)

    async def latest_build_of_sha(self, repository: str, sha: str) -> Build | None:
        return await self._run(self._backend.latest_build_of_sha, repository, sha)

    async def deploy_branch_seen(self, repository: str) -> str | None:
        return await self._run(self._backend.deploy_branch_seen, repository)

    async def state_counts(self) -> dict[str, int]:
        return await self._run(self._backend.state_counts)

    async def next_status(self, now: float) -> tuple[OutboxItem | None, float | None]:
        return await self._run(self._backend.next_status, now)

    async def status_done(self, item_id: int, outcome: str) -> None:
        await self._run(self._backend.status_done, item_id, outcome)

    async def status_retry(self, item_id: int, next_attempt_at: float) -> None:
        await self._run(self._backend.status_retry, item_id, next_attempt_at)

    async def pending_status_count(self) -> int:
        return await self._run(self._backend.pending_status_count)

    async def hooks(self) -> list[Hook]:
        return await self._run(self._backend.hooks)

    async def set_hook_checked(self, repository: str, until: float) -> None:
        await self._run(self._backend.set_hook_checked, repository, until)

    async def known_deliveries(self, delivery_ids: Iterable[str]) -> set[str]:
        return await self._run(self._backend.known_deliveries, list(delivery_ids))

    async def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]:
        return await self._run(
            self._backend.prune, older_than=older_than, keep_per_repository=keep_per_repository
        )

    async def transact(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run `function(db, ...)` in one transaction on the store's thread (see `registry`)."""
        backend = self._backend
        return await self._run(lambda: backend.transact(function, *args, **kwargs))
