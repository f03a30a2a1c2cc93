"""Where this node reads a build's log: the file its worker writes, or, with a store several
nodes share, a local copy of what the node running the build shipped (`runner.executor.
log_shipping`), brought up to date before each read. A build run again (another attempt)
starts its log over, and so does the copy."""

import asyncio
import weakref
from pathlib import Path

from runner.core.links import log_copies, log_path
from runner.store import Store


class LogFiles:
    def __init__(self, data_dir: Path, store: Store) -> None:
        self._data_dir = data_dir
        self._store = store
        self._copies = log_copies(data_dir)
        # One copy brought up to date at a time per build; a lock nobody holds is forgotten.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def path(self, build_id: int) -> Path:
        if not self._store.is_shared:
            return log_path(self._data_dir, build_id)
        lock = self._locks.get(build_id)
        if lock is None:
            lock = self._locks[build_id] = asyncio.Lock()
        async with lock:
            return await self._bring_up_to_date(build_id)

    async def _bring_up_to_date(self, build_id: int) -> Path:
        copy = self._copies / f"{build_id}.log"
        attempt_file = copy.with_suffix(".attempt")
        known = await asyncio.to_thread(_read_attempt, attempt_file)
        size = copy.stat().st_size if known and copy.exists() else 0
        attempt, data = await self._store.read_log(build_id, size)
        if attempt and attempt != known:  # started over: the copy does too
            attempt, data = await self._store.read_log(build_id, 0)
            size = 0
        if attempt:
            await asyncio.to_thread(_write, copy, attempt_file, attempt, size, data)
        return copy


def _read_attempt(path: Path) -> int:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _write(copy: Path, attempt_file: Path, attempt: int, start: int, data: bytes) -> None:
    copy.parent.mkdir(parents=True, exist_ok=True)
    with copy.open("r+b" if start and copy.exists() else "wb") as file:
        file.seek(start)
        file.write(data)
        file.truncate()
    attempt_file.write_text(str(attempt))
