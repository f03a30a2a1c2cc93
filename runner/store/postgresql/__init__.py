"""The PostgreSQL store: one database shared by every node (`storage.database_url`).

The operations are the shared ones (`runner.store.sql.adapter`); this adds a connection pool
(psycopg 3 and psycopg-pool: the PostgreSQL team's own adapter, with native LISTEN/NOTIFY and a
thread-safe pool), threads to run the blocking calls on, READ COMMITTED transactions in which
the queries take an advisory lock per repository before changing its builds (what SQLite's
single writer gives for free), a retry of a transaction the server aborted for a deadlock or a
serialization failure, and announcements across nodes: what a write committed is published
with `pg_notify` inside its transaction, and every node LISTENs and announces what the others
committed to its own scheduler, reporter and live pages. A notification lost while the listener
reconnects costs latency, never work: listeners poll too, and after a reconnect everything is
announced as changed.
"""

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import psycopg_pool
import structlog
from psycopg import errors

from runner.store import migrations
from runner.store.announcements import Change, Committed
from runner.store.postgresql.abandoned import (
    APPLICATION_NAME,
    JANITOR_NAME,
    end_abandoned_transactions,
)
from runner.store.postgresql.connection import PostgresConnection
from runner.store.sql.adapter import SQLStore
from runner.store.sql.connection import Connection

__all__ = ["PostgresStore", "apply_migrations"]

log = structlog.get_logger(logger_name="hobotnica.store")

_T = TypeVar("_T")

CHANNEL = "hobotnica"
POOL_SIZE = 8
CONNECT_TIMEOUT = 10.0
RETRIES = 5  # of a transaction aborted for a deadlock or a serialization failure
LISTEN_RETRY = 1.0
CLOSE_TIMEOUT = 15.0
# A transaction that waits this long for its next statement was abandoned (`abandoned`); every
# node ends such transactions, checking twice per limit. Well under the lease's self-stop (20 s of
# 30), so another node takes a cut-off node's builds over on time.
IDLE_IN_TRANSACTION_LIMIT = 5.0
EVERYTHING = Change.QUEUED | Change.STARTED | Change.ENDED | Change.OUTBOX | Change.LOG
# What says "the database cannot write now": it is unreachable, shutting down, out of space.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


class PostgresStore(SQLStore):
    is_shared = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        idle_in_transaction_limit: float = IDLE_IN_TRANSACTION_LIMIT,
    ) -> None:
        super().__init__()
        self._url = url
        self._node = secrets.token_hex(8)  # tells this node's notifications from the others'
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=CONNECT_TIMEOUT,
            kwargs={
                "autocommit": True,
                "connect_timeout": int(CONNECT_TIMEOUT),
                "application_name": APPLICATION_NAME,
            },
        )
        self._idle_in_transaction_limit = idle_in_transaction_limit
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="store")
        self._listener: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> list[int]:
        """Connect, bring the schema up to date (once, whoever else starts now), listen.

        Returns the migrations this node applied.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, lambda: self._pool.open(wait=True))
        applied = await loop.run_in_executor(self._threads, self._migrate)
        self._listener = asyncio.create_task(self._listen(), name="store-listener")
        self._janitor = asyncio.create_task(
            self._end_abandoned_transactions(), name="store-janitor"
        )
        return applied

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._intake_written()
        for task in (self._listener, self._janitor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Off the event loop, and bounded: a store thread may be stuck in a query to a server
        # that went away, and the loop must stay free meanwhile (and the daemon able to exit).
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await loop.run_in_executor(None, self._pool.close)
                await loop.run_in_executor(None, self._threads.shutdown)
        except TimeoutError:
            log.warning("store connections still busy at close; left behind")

    async def _call(
        self,
        function: Callable[[Connection], _T],
        write: bool,
        announce: Callable[[_T], Committed | None],
    ) -> tuple[_T, Committed | None]:
        def call() -> tuple[_T, Committed | None]:
            with self._pool.connection() as raw:
                if not write:
                    return function(PostgresConnection(raw)), None
                for attempt in range(RETRIES):
                    db = PostgresConnection(raw, begin=True)
                    try:
                        result = function(db)
                        committed = announce(result)
                        db.commit(
                            None if committed is None else (CHANNEL, _encode(self._node, committed))
                        )
                        return result, committed
                    except (errors.DeadlockDetected, errors.SerializationFailure):
                        db.rollback()
                        if attempt == RETRIES - 1:
                            raise
                    except BaseException:
                        db.rollback()
                        raise
                raise AssertionError("unreachable")

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def _is_unavailable(self, error: BaseException) -> bool:
        if isinstance(error, psycopg_pool.PoolTimeout | psycopg.OperationalError):
            return True
        state = getattr(error, "sqlstate", None) or ""
        return state.startswith(_UNAVAILABLE_CLASSES)

    def _migrate(self) -> list[int]:
        with self._pool.connection() as raw, raw.transaction():
            applied = apply_migrations(raw)
        if applied:
            log.info("migrated the database", versions=applied)
        return applied

    async def _own_connection(self, name: str, options: str = "") -> "psycopg.AsyncConnection[Any]":
        """A connection outside the pool, for a loop that keeps it (autocommit); `options`:
        libpq's, e.g. `-c statement_timeout=…`."""
        return await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            connect_timeout=int(CONNECT_TIMEOUT),
            application_name=name,
            options=options,
        )

    async def _listen(self) -> None:
        """What the other nodes commit, announced here; after a reconnect, everything."""
        while True:
            try:
                async with await self._own_connection(APPLICATION_NAME) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.announcements.announce(Committed(EVERYTHING))
                    async for notification in connection.notifies():
                        committed = _decode(self._node, notification.payload)
                        if committed is not None:
                            self.announcements.announce(committed)
            except (psycopg.Error, OSError) as error:
                log.warning("listening for other nodes failed; retrying", error=str(error))
            await asyncio.sleep(LISTEN_RETRY)

    async def _end_abandoned_transactions(self) -> None:
        """On a connection of its own: the pool's may all be waiting for the very lock an
        abandoned transaction holds."""
        limit = self._idle_in_transaction_limit
        while True:
            try:
                timeout = f"-c statement_timeout={int(CONNECT_TIMEOUT * 1000)}"
                async with await self._own_connection(JANITOR_NAME, options=timeout) as connection:
                    while True:
                        await asyncio.sleep(limit / 2)
                        ended = await end_abandoned_transactions(connection, limit)
                        if ended:
                            log.warning(
                                "ended transactions a node abandoned"
                                " (cut off or frozen mid-transaction)",
                                sessions=ended,
                                waited_more_than=limit,
                            )
            except (psycopg.Error, OSError) as error:
                log.warning("could not look for abandoned transactions", error=str(error))
            await asyncio.sleep(LISTEN_RETRY)


def apply_migrations(raw: "psycopg.Connection[Any]") -> list[int]:
    """Inside the caller's transaction: apply the migrations the database lacks, once, whoever
    else starts now; the versions applied."""
    return migrations.apply(PostgresConnection(raw), "postgresql")


def _encode(node: str, committed: Committed) -> str:
    payload: dict[str, Any] = {"node": node, "change": committed.change.value}
    if committed.stops:
        payload["stops"] = [list(stop) for stop in committed.stops][:50]
    if committed.outbox_due_at:
        payload["due"] = committed.outbox_due_at
    return json.dumps(payload)


def _decode(node: str, payload: str) -> Committed | None:
    try:
        message = json.loads(payload)
        if message.get("node") == node:
            return None  # announced here already, when it committed
        stops = tuple((int(build_id), str(reason)) for build_id, reason in message.get("stops", ()))
        return Committed(Change(int(message["change"])), stops, float(message.get("due", 0)))
    except (ValueError, KeyError, TypeError):
        log.warning("a notification that is not ours", payload=payload[:200])
        return None
