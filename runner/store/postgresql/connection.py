"""`runner.store.sql.connection.Connection` over a psycopg connection.

The shared queries are written with `?` placeholders and 0/1 flags; here they become psycopg's
`%s` (a literal `%` doubled) and integers. Rows read by name and by position, like SQLite's.
`lock` is a transaction-scoped advisory lock on the key's hash; `now` is the transaction's
timestamp from the server's clock, so every node measures leases by one clock.
"""

import contextlib
import functools
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import RowMaker

from runner.store.sql.connection import Cursor


class Row(tuple[Any, ...]):
    """A row that reads by column name or position (as `sqlite3.Row` does)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> "Row":
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._index)


def rows(cursor: "psycopg.Cursor[Any]") -> RowMaker[Row]:
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}

    def make(values: Sequence[Any]) -> Row:
        return Row([float(v) if isinstance(v, Decimal) else v for v in values], index)

    return make


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """`?` placeholders → psycopg's `%s`; a literal `%` (LIKE patterns) doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


def _adapt(parameters: Sequence[object]) -> list[object]:
    return [int(value) if isinstance(value, bool) else value for value in parameters]


class PostgresConnection:
    """One transaction (`begin`), or autocommit reads. What needs no answer waits to go with
    the next statement that does, in one pipeline (one round trip): `BEGIN`, the transaction's
    locks and its timestamp with the first statement, writes through `executemany` with what
    follows them, and `COMMIT` with the notification and the last writes. (A lock or write that
    fails this way fails when the next statement is sent: inside the same transaction, so the
    transaction fails as it would.)"""

    def __init__(self, raw: "psycopg.Connection[Any]", *, begin: bool = False) -> None:
        self.raw = raw
        self._in_transaction = begin
        # Not sent yet: (statement, rows of parameters), in order.
        self._unsent: list[tuple[str, list[list[object]]]] = [("BEGIN", [[]])] if begin else []
        self._now: float | None = None
        self._locked: set[str] = set()  # this transaction's locks (a connection: one transaction)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        return self._together([(sql, _adapt(parameters))])[0]

    def execute_together(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[list[Any]]:
        """Each statement in order, all in one round trip; each one's rows."""
        cursors = self._together([(sql, _adapt(parameters)) for sql, parameters in statements])
        return [cursor.fetchall() if cursor.description else [] for cursor in cursors]

    def _together(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> "list[psycopg.Cursor[Row]]":
        cursors = [self.raw.cursor(row_factory=rows) for _ in statements]
        if not self._unsent and len(statements) == 1:
            cursors[0].execute(translate(statements[0][0]), statements[0][1])
            return cursors
        with self.raw.pipeline():
            clock = self._send_unsent()
            for cursor, (sql, parameters) in zip(cursors, statements, strict=True):
                cursor.execute(translate(sql), parameters)
        self._read_clock(clock)
        return cursors

    def _send_unsent(self) -> "psycopg.Cursor[Row] | None":
        """Inside a pipeline: what waited, in order; with the transaction's first statements,
        a read of its timestamp (the cursor to read it from, once the pipeline is through)."""
        clock = None
        for sql, parameters in self._unsent:
            if len(parameters) == 1:
                self.raw.execute(sql, parameters[0])
            else:
                with self.raw.cursor() as cursor:
                    cursor.executemany(sql, parameters)
            if sql == "BEGIN" and self._now is None:
                clock = self.raw.cursor(row_factory=rows)
                clock.execute("SELECT extract(epoch FROM transaction_timestamp())")
        self._unsent.clear()
        return clock

    def _read_clock(self, clock: "psycopg.Cursor[Row] | None") -> None:
        found = None if clock is None else clock.fetchone()
        if found is not None:
            self._now = float(found[0])

    def executemany(self, sql: str, rows_: Iterable[Sequence[object]]) -> None:
        parameters = [_adapt(row) for row in rows_]
        if not parameters:
            return
        self._unsent.append((translate(sql), parameters))
        if not self._in_transaction:  # nothing else would send it
            with self.raw.pipeline():
                self._send_unsent()

    def execute_each(self, sql: str, rows_: Iterable[Sequence[object]]) -> list[list[Any]]:
        """Many rows in one pipeline (one round trip); one row as a plain statement."""
        parameters = [_adapt(row) for row in rows_]
        if len(parameters) == 1:
            return self.execute_together([(sql, parameters[0])])
        if not parameters:
            return []
        with self.raw.cursor(row_factory=rows) as cursor:
            with self.raw.pipeline():
                clock = self._send_unsent()
                cursor.executemany(translate(sql), parameters, returning=True)
            self._read_clock(clock)
            return [list(result.fetchall()) for result in cursor.results()]

    def commit(self, notification: tuple[str, str] | None) -> None:
        """Commit, publishing `notification` (channel, payload) with it."""
        if self._unsent == [("BEGIN", [[]])]:  # nothing was written
            self._unsent.clear()
            if notification is not None:
                self.raw.execute("SELECT pg_notify(%s, %s)", list(notification))
            return
        with self.raw.pipeline():
            self._send_unsent()
            if notification is not None:
                self.raw.execute("SELECT pg_notify(%s, %s)", list(notification))
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """After an error: end the transaction. A connection that broke is the pool's to
        discard; the error that broke it is the one to report."""
        self._unsent.clear()
        with contextlib.suppress(psycopg.Error):
            if self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.raw.execute("ROLLBACK")

    def lock(self, key: str) -> None:
        """Hold `key`'s lock to the transaction's end, from the next statement on (it is sent
        with it); asking again costs nothing. (A lock first taken inside a savepoint that is
        rolled back would be given up: the store's SQL takes its locks before any savepoint.)"""
        if key in self._locked:
            return
        lock: tuple[str, list[list[object]]] = (
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [[key]],
        )
        if self._in_transaction:
            self._unsent.append(lock)
        else:
            self.raw.execute(lock[0], lock[1][0])
        self._locked.add(key)

    def now(self) -> float:
        """The transaction's timestamp: read with its first statements, so mostly free."""
        if self._now is None:
            found = self.execute("SELECT extract(epoch FROM transaction_timestamp())").fetchone()
            if self._now is None:  # outside a transaction: no clock came with it
                self._now = float(found[0])
        return self._now
