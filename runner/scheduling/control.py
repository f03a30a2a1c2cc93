"""What a person may do to a build: cancel it, or run its commit again. No HTTP in here.

The build page's buttons and the REST API both call `BuildControl`; the rules live in the store
(`SQLiteStore.cancel_build`, `SQLiteStore.rerun_build`) so they hold for every daemon sharing it.

- `cancel`: a queued build ends `error` "Cancelled by WHO" at once. A running build is asked to stop
  through the store (the daemon running it reads that on its next heartbeat, as it reads a
  newer push's stop request), and at once when it runs in this daemon; it ends `error`
  "Cancelled by WHO" with its whole process tree. A running deploy is stopped too — a person asked —
  and may be left half done, which its log says. Finished builds stay as they are.
- `rerun`: a new build (new id and page) of the same commit and lane; see the store for how a
  re-run of a deploy keeps deploys from going backwards.
"""

import enum
from dataclasses import dataclass

import structlog

from runner.core.models import BuildState
from runner.store import Rerun, Store

__all__ = ["CANCELLED", "BuildControl", "Cancelled", "Rerun"]

log = structlog.get_logger(logger_name="hobotnica.control")

CANCELLED = "Cancelled"


class Cancelled(enum.Enum):
    ENDED = "ended"  # it was queued, and is now final
    STOPPING = "stopping"  # it runs; it ends shortly
    ALREADY_FINISHED = "already finished"
    NOT_FOUND = "not found"


@dataclass
class BuildControl:
    """Cancel and re-run through the store, which announces them: the scheduler stops a build
    running here, wakes for a re-run, and the reporter tells GitHub."""

    store: Store

    async def cancel(self, build_id: int, *, by: str) -> Cancelled:
        reason = f"{CANCELLED} by {by}"
        state = await self.store.cancel_build(build_id, reason)
        if state is None:
            return Cancelled.NOT_FOUND
        if state is BuildState.QUEUED:
            outcome = Cancelled.ENDED
        elif state is BuildState.RUNNING:
            outcome = Cancelled.STOPPING
        else:
            outcome = Cancelled.ALREADY_FINISHED
        log.info("cancel", build_id=build_id, user=by, outcome=outcome.value)
        return outcome

    async def approve(self, build_id: int, *, by: str) -> bool | None:
        """Let a fork's build that waits for approval run (None: no such build; False: it was
        not waiting). Who approved is logged, and shown on its page."""
        approved = await self.store.approve_build(build_id, by)
        if approved:  # decided under the repository's lock: a newer push may have won
            log.info("approved", build_id=build_id, user=by)
        return approved

    async def rerun(self, build_id: int, *, by: str) -> Rerun:
        answer = await self.store.rerun_build(build_id, by)
        log.info(
            "re-run",
            build_id=build_id,
            user=by,
            new_build_id=answer.build_id,
            refused=answer.refused,
        )
        return answer
