"""The scheduler: claims queued builds from the store and owns the tasks that run them.

Ordering lives in the store's claim (the oldest queued build of each repository with nothing
running, so one repository's builds run one at a time in arrival order); this class adds the
global cap (`builds.concurrency`), keeps a reference to every build task, and on `close` stops
claiming, lets running builds finish up to a timeout, then interrupts the rest.
"""

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from runner.build.process import StopRequest
from runner.models import Build
from runner.store import Store

log = structlog.get_logger("hobotnica.scheduler")


class Scheduler:
    def __init__(
        self,
        store: Store,
        run_build: Callable[[Build, StopRequest], Coroutine[Any, Any, None]],
        concurrency: int,
    ) -> None:
        self._store = store
        self._run_build = run_build
        self._concurrency = concurrency
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stops: dict[int, StopRequest] = {}
        self._wake = asyncio.Event()
        self._claiming = True
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running_ids(self) -> list[int]:
        return sorted(self._running)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        """Start no new builds (drain); queued builds stay queued for the next instance."""
        self._claiming = False
        self._wake.set()

    async def _loop(self) -> None:
        while self._claiming:
            self._wake.clear()
            free = self._concurrency - len(self._running)
            if free > 0:
                try:
                    claimed = await self._store.claim_builds(free)
                except Exception:
                    log.exception("claiming builds failed")
                    claimed = []
                for build in claimed:
                    stop = self._stops[build.id] = StopRequest()
                    task = asyncio.create_task(
                        self._run_build(build, stop), name=f"build-{build.id}"
                    )
                    self._running[build.id] = task
                    task.add_done_callback(functools.partial(self._done, build.id))
            await self._wake.wait()

    def _done(self, build_id: int, _task: "asyncio.Task[None]") -> None:
        self._running.pop(build_id, None)
        self._stops.pop(build_id, None)
        self._wake.set()

    def cancel(self, build_id: int, reason: str) -> bool:
        """Stop a build running in this process; its status will give `reason`."""
        stop = self._stops.get(build_id)
        if stop is None:
            return False
        log.info("stopping build", build_id=build_id, reason=reason)
        stop.stop(reason)
        return True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no build runs; False if some still run after `timeout` seconds."""
        tasks = list(self._running.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def close(self, timeout: float) -> None:
        self.stop_claiming()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if not await self.wait_idle(timeout):
            log.warning("interrupting builds still running at shutdown", builds=self.running_ids)
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
