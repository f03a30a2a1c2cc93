"""The pace of status posts: `burst` at once, then `per_minute`, kept in the store so that a
daemon taking over the outbox (the other blue/green instance, another node) goes on at the pace
its predecessor left instead of starting with a fresh burst.

A token bucket is one number here (the generic cell rate algorithm): `debt_until`, when the
bucket would be full again if nothing more were taken. Taking a token moves it one interval on;
the bucket is short, and the taker waits, while it is more than `burst` intervals ahead. The
store keeps it with its pauses, which only ever move later, so two writers cannot undo a take.
"""

from dataclasses import dataclass

from runner.store import Store

BURST = 20
PER_MINUTE = 60.0
PACE_NAME = "github-status-pace"


@dataclass
class TokenBucket:
    """`burst` requests at once, refilled at `per_minute`; `take` says how long to wait."""

    burst: float = BURST
    per_minute: float = PER_MINUTE
    debt_until: float = 0.0

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    def take(self, now: float) -> float:
        self.debt_until = max(self.debt_until, now) + self.interval
        return max(0.0, self.debt_until - now - self.burst * self.interval)


class SharedPace:
    """The bucket of the installation: read from the store when this daemon starts posting
    (`resume`), written back at each take. Times are wall-clock: several hosts share them."""

    def __init__(self, store: Store, per_minute: float = PER_MINUTE, burst: float = BURST) -> None:
        self._store = store
        self._bucket = TokenBucket(burst=burst, per_minute=per_minute)

    async def resume(self) -> None:
        stored = await self._store.paused_until(PACE_NAME)
        self._bucket.debt_until = max(self._bucket.debt_until, stored)

    async def take(self, now: float) -> float:
        wait = self._bucket.take(now)
        await self._store.pause(PACE_NAME, self._bucket.debt_until)
        return wait
