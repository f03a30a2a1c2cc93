"""The scheduler: claims queued builds from the store and owns the tasks that run them.

Ordering lives in the store's claim (the oldest queued build of each repository with nothing
running, so one repository's builds run one at a time in arrival order); this class adds the
global cap (`builds.concurrency`) and keeps a reference to every build task.

Several daemons may share the store (blue/green), so the scheduler also:
- leases what it claims and renews the leases on a heartbeat; the heartbeat also reads stop
  requests another daemon's intake wrote (a newer push superseded a build running here);
- polls for builds another daemon queued (its own intake wakes it at once);
- recovers builds whose daemon is gone or whose lease lapsed;
- on `close`, stops claiming, lets running builds finish up to a timeout, then interrupts the
  rest and releases them by the recovery rule, so the other daemon can take them.
"""

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from runner.core.background import BackgroundJobs
from runner.core.errors import StoreUnavailable
from runner.core.models import Build
from runner.scheduling.stop import StopRequest
from runner.store import RecoveredBuild, Store
from runner.store.announcements import Change, Committed

log = structlog.get_logger(logger_name="hobotnica.scheduler")

POLL_SECONDS = 1.0
LOST_LEASE = "Lease lost: another daemon took the build over"
LOST_CONTACT = "Stopped: this node lost contact with the database; another node takes over"


@dataclass(frozen=True)
class LeaseTiming:
    """A claimed build's lease, renewed every `heartbeat` seconds. With a store several nodes
    share, a node whose renewals fail for `self_stop` seconds stops its builds itself, before
    another node may reclaim them: a network split never runs one build on two nodes."""

    lease: float = 30.0
    heartbeat: float = 5.0

    @property
    def self_stop(self) -> float:
        return self.lease * 2 / 3


RunBuild = Callable[[Build, StopRequest], Coroutine[Any, Any, None]]
OnRecovered = Callable[[list[RecoveredBuild]], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        store: Store,
        run_build: RunBuild,
        *,
        concurrency: int,
        owner: str,
        is_gone: Callable[[str | None], bool],
        on_recovered: OnRecovered,
        jobs: BackgroundJobs,
        shortage: Callable[[], str | None] = lambda: None,
        timing: LeaseTiming = LeaseTiming(),
        can_run: Callable[[str], bool] = lambda _repository: True,
    ) -> None:
        self._timing = timing
        self._can_run = can_run  # which repositories' builds this node can run
        self._store = store
        self._run_build = run_build
        self._concurrency = concurrency
        self._owner = owner
        self._is_gone = is_gone
        self._on_recovered = on_recovered
        self._shortage = (
            shortage  # why no build may start now (runner.scheduling.free_space), or None
        )
        self._paused: str | None = None
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stops: dict[int, StopRequest] = {}
        self._wake = asyncio.Event()
        self._claiming = True
        self._jobs = jobs

    @property
    def running_ids(self) -> list[int]:
        return sorted(self._running)

    def start(self) -> None:
        self._store.announcements.subscribe(self._on_committed)
        self._jobs.keep_running("scheduler", self._claim_loop)
        self._jobs.keep_running("heartbeat", self._heartbeat_loop)

    def _on_committed(self, committed: Committed) -> None:
        """Builds queued or ended: there may be work to claim. Stops: if the build runs here,
        now (another daemon's build hears it at its heartbeat)."""
        if committed.change & (Change.QUEUED | Change.ENDED):
            self._wake.set()
        for build_id, reason in committed.stops:
            self.cancel(build_id, reason)

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        """Start no new builds (drain); queued builds stay queued for another daemon."""
        self._claiming = False
        self._wake.set()

    def cancel(self, build_id: int, reason: str) -> bool:
        """Stop a build running in this process; its status will give `reason`."""
        stop = self._stops.get(build_id)
        if stop is None:
            return False
        log.info("stopping build", build_id=build_id, reason=reason)
        stop.stop(reason)
        return True

    async def _claim_loop(self) -> None:
        while self._claiming:
            self._wake.clear()
            wait = POLL_SECONDS
            free = self._concurrency - len(self._running)
            if free > 0 and self._may_start():
                try:
                    claimed = await self._store.claim_builds(
                        free, self._owner, self._timing.lease, self._can_run
                    )
                    for build in claimed:
                        self._start(build)
                    if len(claimed) < free and (settled := await self._store.settling_until()):
                        wait = min(wait, max(0.0, settled - time.time()))
                except StoreUnavailable as error:
                    log.warning("cannot claim builds: the store cannot write", error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _may_start(self) -> bool:
        paused = self._shortage()
        if paused != self._paused:
            if paused:
                log.warning("not starting builds", reason=paused)
            else:
                log.info("starting builds again")
            self._paused = paused
        return paused is None

    def _start(self, build: Build) -> None:
        stop = self._stops[build.id] = StopRequest()
        task = asyncio.create_task(self._run_build(build, stop), name=f"build-{build.id}")
        self._running[build.id] = task
        task.add_done_callback(functools.partial(self._done, build.id))

    def _done(self, build_id: int, _task: "asyncio.Task[None]") -> None:
        self._running.pop(build_id, None)
        self._stops.pop(build_id, None)
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        renewed = time.monotonic()  # the leases of builds claimed since last longer than this
        while True:
            await asyncio.sleep(self._timing.heartbeat)
            started = time.monotonic()  # the database renews at this time or later
            try:
                await asyncio.wait_for(self._heartbeat(), self._timing.heartbeat)
                renewed = started
                recovered = await self._store.recover_interrupted(self._is_gone)
                if recovered:
                    await self._on_recovered(recovered)
                    self._wake.set()
            except (StoreUnavailable, TimeoutError) as error:
                # Leases are renewed at the next beat that writes; on one host nobody else could
                # take a build over meanwhile, but with a shared store another node will.
                log.warning("heartbeat cannot write", error=str(error) or "timed out")
                if self._store.is_shared and time.monotonic() - renewed > self._timing.self_stop:
                    for build_id in list(self._running):
                        self.cancel(build_id, LOST_CONTACT)

    async def _heartbeat(self) -> None:
        ids = list(self._running)
        leases = await self._store.heartbeat(self._owner, ids, self._timing.lease)
        for build_id in ids:
            if build_id not in leases:
                self.cancel(build_id, LOST_LEASE)
            elif reason := leases[build_id]:
                self.cancel(build_id, reason)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no build runs; False if some still run after `timeout` seconds.

        Builds that start meanwhile (a claim that was under way at SIGTERM) are waited for too.
        """
        deadline = time.monotonic() + timeout
        while self._running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._running.values()), timeout=remaining)
        return True

    async def close(self, timeout: float) -> None:
        self.stop_claiming()
        await self._jobs.wait("scheduler")
        if not await self.wait_idle(timeout):
            unfinished = self.running_ids
            log.warning("interrupting builds still running at shutdown", builds=unfinished)
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            released = await self._store.release(self._owner, unfinished)
            log.warning(
                "released interrupted builds",
                requeued=[b.id for b in released if b.requeued],
                ended=[b.id for b in released if not b.requeued],
            )
        await self._jobs.close("scheduler", "heartbeat")
