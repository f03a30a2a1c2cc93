"""The SQLite store: the embedded default, one file under the data directory.

SQLite calls (and their fsyncs) block, so every operation runs on one dedicated thread, never on
the event loop; one thread also means one connection and no lock juggling inside the process
(a second blue/green instance is serialised by SQLite's own locking). The operations are the
shared ones of `runner.store.sql.adapter` (with its group commit of deliveries); this adds the
thread and the file.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from runner.store.announcements import Committed
from runner.store.sql.adapter import SQLStore
from runner.store.sql.connection import Connection
from runner.store.sqlite.database import Database, database_path, is_unavailable

__all__ = ["SQLiteStore", "database_path"]

_T = TypeVar("_T")


class SQLiteStore(SQLStore):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._database = Database(path)
        self._closed = False

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "SQLiteStore":
        return cls(database_path(data_dir))

    async def _call(
        self,
        function: Callable[[Connection], _T],
        write: bool,
        announce: Callable[[_T], Committed | None],
    ) -> tuple[_T, Committed | None]:
        def call() -> tuple[_T, Committed | None]:
            if not write:
                return function(self._database.connection), None
            with self._database.transaction() as db:
                result = function(db)
                return result, announce(result)

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def _is_unavailable(self, error: BaseException) -> bool:
        return is_unavailable(error)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._intake_written()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._database.close)
        self._thread.shutdown(wait=True)

    async def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]:
        pruned = await super().prune(older_than=older_than, keep_per_repository=keep_per_repository)
        await asyncio.get_running_loop().run_in_executor(
            self._thread, self._database.give_space_back
        )
        return pruned

    async def integrity_check(self) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._database.integrity_check)
