"""Background work with one owner: every long-lived loop and periodic job of the daemon.

A job's task is kept here (never fire-and-forget), named, and ended by `close`. Whatever a job
raises is handled in one place: logged with its traceback, and the job runs again after
`RESTART_DELAY` — a loop that must never die (the scheduler's, the reporter's) cannot die of a
bug in one turn. A loop that returns is done.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(logger_name="hobotnica")

RESTART_DELAY = 1.0


class BackgroundJobs:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def keep_running(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()`; run it again if it raises, until it returns or `close`."""
        self._tasks[name] = asyncio.create_task(self._supervise(name, loop), name=name)

    def every(self, name: str, interval: float, run: Callable[[], Awaitable[object]]) -> None:
        """Run `run()` now, then every `interval` seconds."""

        async def periodically() -> None:
            while True:
                await self._once(name, run)
                await asyncio.sleep(interval)

        self._tasks[name] = asyncio.create_task(periodically(), name=name)

    async def wait(self, name: str) -> None:
        """Until the job `name` returned (it was asked to end some other way)."""
        if (task := self._tasks.get(name)) is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self, *names: str) -> None:
        """End the jobs `names` (all, when none is named), and wait until they have ended."""
        for name in names or list(self._tasks):
            task = self._tasks.pop(name, None)
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        while not await self._once(name, loop):  # noqa: ASYNC110 - a pause after a failure
            await asyncio.sleep(RESTART_DELAY)

    @staticmethod
    async def _once(name: str, run: Callable[[], Awaitable[object]]) -> bool:
        """True when `run` returned; False when it raised (logged here, the one handler)."""
        try:
            await run()
        except Exception:
            log.exception("background job failed", job=name)
            return False
        return True
