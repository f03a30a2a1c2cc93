"""After the store could not write (a full disk): find out when it can again, and catch up.

While writes fail, a small write is tried now and then. Once writes succeed again (that one or
any other), the store announces it (the scheduler and the reporter wake) and GitHub is asked to
redeliver what intake refused meanwhile (`DeliveryCatchUp`).
"""

import contextlib

import structlog

from runner.core.errors import StoreUnavailable
from runner.intake.catchup import DeliveryCatchUp
from runner.store import Store
from runner.store.announcements import Change, Committed

log = structlog.get_logger(logger_name="hobotnica")

# While the store cannot write, how often a small write checks whether it can again.
PROBE_INTERVAL = 2.0


class StoreRecovery:
    def __init__(self, store: Store, catch_up: DeliveryCatchUp | None) -> None:
        self._store = store
        self._catch_up = catch_up
        self._failures_seen = 0

    async def run_once(self) -> None:
        store = self._store
        if not store.writable:
            with contextlib.suppress(StoreUnavailable):
                await store.probe_write()
        failures = store.write_failures
        if not store.writable or failures == self._failures_seen:
            return
        self._failures_seen = failures
        log.warning("the store writes again", failed_writes=failures)
        store.announcements.announce(Committed(Change.QUEUED | Change.OUTBOX))
        if self._catch_up is not None:
            await self._catch_up.run_once()
