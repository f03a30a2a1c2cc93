"""A bounded TTL cache whose misses are loaded once, however many callers miss at the same time.

cachetools gives the bounded TTL cache; this adds the one thing it lacks for asyncio: concurrent
callers that miss the same key share one load (one GitHub round trip for a burst of API calls).
Failed loads are not cached, so an unreachable GitHub is asked again on the next call.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlightCache(Generic[K, V]):
    def __init__(self, *, maxsize: int, ttl: float) -> None:
        self._cache: TTLCache[K, V] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._loading: dict[K, asyncio.Future[V]] = {}

    def peek(self, key: K) -> V | None:
        return self._cache.get(key)

    def put(self, key: K, value: V) -> None:
        self._cache[key] = value

    def forget(self, predicate: Callable[[K], bool]) -> None:
        for key in [key for key in self._cache if predicate(key)]:
            self._cache.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            return self._cache[key]
        except KeyError:
            pass
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(load())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._loaded(key, done))
        # shield: one caller giving up does not cancel the load the others wait for.
        return await asyncio.shield(loading)

    def _loaded(self, key: K, done: asyncio.Future[V]) -> None:
        self._loading.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._cache[key] = done.result()
