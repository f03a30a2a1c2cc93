"""What the store committed, announced to whoever waits for it: the one seam between stages.

The scheduler wakes when builds were queued or ended, and stops the running builds a newer push
or a person asked to stop; the reporter wakes when the outbox has statuses due; the live pages
follow builds as they start and end. Each learns it from the store's announcement after the
commit, not from the stage that caused it, so no stage calls a later one. With several nodes
on one database the same announcements arrive from the others (PostgreSQL's LISTEN/NOTIFY).

An announcement wakes; it never carries the truth. Listeners read the store again, and poll as
well, so an announcement lost (a node reconnecting) costs latency, never work.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(logger_name="hobotnica.store")


class Change(enum.Flag):
    NONE = 0
    QUEUED = enum.auto()  # builds were queued (or queued again): there may be work to claim
    STARTED = enum.auto()  # builds started running
    ENDED = enum.auto()  # builds reached a final state
    OUTBOX = enum.auto()  # statuses were written for GitHub (due at `outbox_due_at`)
    STOPS = enum.auto()  # running builds were asked to stop (`stops`)
    LOG = enum.auto()  # a build's log grew (shipped by the node running it)


@dataclass(frozen=True)
class Committed:
    change: Change
    stops: tuple[tuple[int, str], ...] = ()  # (running build id, the reason its status gives)
    outbox_due_at: float = 0.0  # the earliest status written is due then (pending ones wait)


Listener = Callable[[Committed], None]


class Announcer:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def announce(self, committed: Committed | None) -> None:
        if committed is None or committed.change is Change.NONE:
            return
        for listener in self._listeners:
            try:
                listener(committed)
            except Exception:  # one listener's bug must not keep the others from waking
                log.exception("an announcement listener failed", change=str(committed.change))
