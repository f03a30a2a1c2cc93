"""A running build's log, shipped to a store several nodes share, so its page and live log
answer on every node.

The worker writes the log file as always (capped, masked); this follows the file and sends
what it gained to the store every `INTERVAL` seconds and once more when the build ends. The file
only grows while the build runs, so each chunk is named by its offset and sending one twice is
harmless. A store that cannot write now costs this node's readers nothing, and the others a
delay: the next tick sends what is missing.
"""

import asyncio
import contextlib
from pathlib import Path

import structlog

from runner.core.errors import StoreUnavailable
from runner.store import Store

log = structlog.get_logger(logger_name="hobotnica.build")

INTERVAL = 0.5
CHUNK_BYTES = 256 * 1024


class LogShipper:
    def __init__(self, store: Store, path: Path, build_id: int, attempt: int) -> None:
        self._store = store
        self._path = path
        self._build_id = build_id
        self._attempt = attempt
        self._shipped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"log-shipper-{self._build_id}")

    async def close(self) -> None:
        """Once the log file is complete: send the rest, and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._ship()
        except StoreUnavailable as error:
            log.warning("the build's log could not be shipped whole", error=str(error))

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            with contextlib.suppress(StoreUnavailable):
                await self._ship()

    async def _ship(self) -> None:
        while chunk := await asyncio.to_thread(self._read, self._shipped):
            await self._store.append_log(self._build_id, self._attempt, self._shipped, chunk)
            self._shipped += len(chunk)

    def _read(self, start: int) -> bytes:
        try:
            with self._path.open("rb") as file:
                file.seek(start)
                return file.read(CHUNK_BYTES)
        except FileNotFoundError:
            return b""
