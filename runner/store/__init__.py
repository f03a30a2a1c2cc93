"""The store as the rest of the daemon sees it: async methods over a synchronous backend.

SQLite calls (and their fsyncs) block, so they run on one dedicated thread, never on the event
loop. One thread also means one connection and no lock juggling inside the process; other
processes (a second blue/green instance) are serialised by SQLite's own locking.
"""

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from runner.models import Build, BuildRequest
from runner.statuses import Status
from runner.store.sqlite import DeliveryOutcome, OutboxItem, RecoveredBuild, SQLiteStore

__all__ = ["DeliveryOutcome", "OutboxItem", "RecoveredBuild", "Store"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Store:
    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._backend = SQLiteStore(path)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "Store":
        return cls(data_dir / "hobotnica.sqlite3")

    async def _run(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: function(*args, **kwargs))

    async def close(self) -> None:
        await self._run(self._backend.close)
        self._thread.shutdown(wait=True)

    async def record_delivery(
        self,
        *,
        delivery_id: str,
        event: str,
        hook_id: str | None,
        received_at: float,
        outcome: str,
        requests: Sequence[BuildRequest],
    ) -> DeliveryOutcome:
        return await self._run(
            self._backend.record_delivery,
            delivery_id=delivery_id,
            event=event,
            hook_id=hook_id,
            received_at=received_at,
            outcome=outcome,
            requests=requests,
        )

    async def claim_builds(self, limit: int) -> list[Build]:
        return await self._run(self._backend.claim_builds, limit)

    async def finish_build(
        self, build_id: int, status: Status, exit_code: int | None
    ) -> int | None:
        return await self._run(self._backend.finish_build, build_id, status, exit_code)

    async def set_commit_info(self, build_id: int, message: str, author: str) -> None:
        await self._run(self._backend.set_commit_info, build_id, message, author)

    async def recover_interrupted(self) -> list[RecoveredBuild]:
        return await self._run(self._backend.recover_interrupted)

    async def get_build(self, build_id: int) -> Build | None:
        return await self._run(self._backend.get_build, build_id)

    async def queued_count(self) -> int:
        return await self._run(self._backend.queued_count)

    async def next_status(self, now: float) -> tuple[OutboxItem | None, float | None]:
        return await self._run(self._backend.next_status, now)

    async def status_done(self, item_id: int, outcome: str) -> None:
        await self._run(self._backend.status_done, item_id, outcome)

    async def status_retry(self, item_id: int, next_attempt_at: float) -> None:
        await self._run(self._backend.status_retry, item_id, next_attempt_at)

    async def pending_status_count(self) -> int:
        return await self._run(self._backend.pending_status_count)
