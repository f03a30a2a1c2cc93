"""An owned background job that runs now and then every `interval` seconds until closed.

A failing run is logged with its traceback and the job goes on at the next interval.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(logger_name="hobotnica")


class Periodic:
    def __init__(self, name: str, run: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._run = run
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def _loop(self) -> None:
        while True:
            try:
                await self._run()
            except Exception:
                log.exception("background job failed", job=self._name)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
