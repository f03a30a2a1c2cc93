"""What each write of the store committed, for `runner.store.announcements`."""

import time

from runner.core.models import Build, BuildState
from runner.core.statuses import superseded_by
from runner.store.announcements import Change, Committed
from runner.store.interface import PENDING_HOLD
from runner.store.records import DeliveryOutcome, RecoveredBuild, Rerun
from runner.store.sql.registry import STOPPED_DISABLED, STOPPED_REMOVED


def recorded(outcome: DeliveryOutcome, *_: object) -> Committed | None:
    if outcome.duplicate or not outcome.build_ids:
        return None
    change = Change.QUEUED | Change.OUTBOX
    if outcome.superseded_ids:
        change |= Change.ENDED
    if outcome.running_superseded:
        change |= Change.STOPS
    stops = tuple((build_id, superseded_by(sha)) for build_id, sha in outcome.running_superseded)
    # A superseded build's final status is due at once; a new build's `Queued` is held.
    due = time.time() + (0 if outcome.superseded_ids else PENDING_HOLD)
    return Committed(change, stops, due)


def recorded_together(answers: list[DeliveryOutcome | Exception], *_: object) -> Committed | None:
    """What a group commit of deliveries committed, all in one (a delivery that failed: none)."""
    parts = [
        committed
        for answer in answers
        if not isinstance(answer, Exception) and (committed := recorded(answer)) is not None
    ]
    if not parts:
        return None
    change = Change.NONE
    for part in parts:
        change |= part.change
    stops = tuple(stop for part in parts for stop in part.stops)
    return Committed(change, stops, min(part.outbox_due_at for part in parts))


def claimed(builds: list[Build], *_: object) -> Committed | None:
    if not builds:
        return None
    return Committed(Change.STARTED | Change.OUTBOX, outbox_due_at=time.time() + PENDING_HOLD)


def finished(deploy_id: int | None, *_: object) -> Committed:
    change = Change.ENDED | Change.OUTBOX | (Change.QUEUED if deploy_id else Change.NONE)
    return Committed(change, outbox_due_at=time.time())


def recovered(builds: list[RecoveredBuild], *_: object) -> Committed | None:
    if not builds:
        return None
    return Committed(Change.QUEUED | Change.ENDED | Change.OUTBOX, outbox_due_at=time.time())


def cancelled(state: BuildState | None, build_id: int, reason: str) -> Committed | None:
    if state is BuildState.QUEUED:
        return Committed(Change.ENDED | Change.OUTBOX | Change.QUEUED, outbox_due_at=time.time())
    if state is BuildState.RUNNING:
        return Committed(Change.STOPS, stops=((build_id, reason),))
    return None


def approved(changed: bool | None, *_: object) -> Committed | None:
    if changed:
        return Committed(Change.QUEUED | Change.OUTBOX, outbox_due_at=time.time())
    return None


def rerun(answer: Rerun, *_: object) -> Committed | None:
    if answer.build_id is None:
        return None
    return Committed(Change.QUEUED | Change.OUTBOX, outbox_due_at=time.time() + PENDING_HOLD)


def disabled(running: list[int] | None, *_: object) -> Committed | None:
    return None if running is None else _stopped(running, STOPPED_DISABLED)


def removed(running: list[int], *_: object) -> Committed:
    return _stopped(running, STOPPED_REMOVED)


def _stopped(running: list[int], reason: str) -> Committed:
    # Queued builds of the repository ended too, and GitHub hears of those it knew.
    change = (
        Change.ENDED | Change.OUTBOX | Change.QUEUED | (Change.STOPS if running else Change.NONE)
    )
    return Committed(change, tuple((build_id, reason) for build_id in running), time.time())


def log_appended(_result: None, *_: object) -> Committed:
    return Committed(Change.LOG)
