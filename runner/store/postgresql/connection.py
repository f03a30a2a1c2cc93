"""`runner.store.sql.connection.Connection` over a psycopg connection.

The shared queries are written with `?` placeholders and 0/1 flags; here they become psycopg's
`%s` (a literal `%` doubled) and integers. Rows read by name and by position, like SQLite's.
`lock` is a transaction-scoped advisory lock on the key's hash; `now` is the transaction's
timestamp from the server's clock, so every node measures leases by one clock.
"""

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
    def __init__(self, raw: "psycopg.Connection[Any]") -> None:
        self.raw = raw
        self._now: float | None = None
        self._locked: set[str] = set()  # this transaction's locks (a connection: one transaction)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        cursor = self.raw.cursor(row_factory=rows)
        cursor.execute(translate(sql), _adapt(parameters))
        return cursor

    def executemany(self, sql: str, rows_: Iterable[Sequence[object]]) -> None:
        self._each(sql, [_adapt(row) for row in rows_], returning=False)

    def execute_each(self, sql: str, rows_: Iterable[Sequence[object]]) -> list[list[Any]]:
        return self._each(sql, [_adapt(row) for row in rows_], returning=True)

    def _each(self, sql: str, parameters: list[list[object]], returning: bool) -> list[list[Any]]:
        """Many rows in one pipeline (one round trip); one row as a plain statement, which
        costs less than entering and leaving a pipeline."""
        with self.raw.cursor(row_factory=rows) as cursor:
            if len(parameters) == 1:
                cursor.execute(translate(sql), parameters[0])
                return [cursor.fetchall() if cursor.description else []]
            if parameters:
                cursor.executemany(translate(sql), parameters, returning=returning)
            if not returning:
                return []
            return [list(result.fetchall()) for result in cursor.results()]

    def lock(self, key: str) -> None:
        """Hold `key`'s lock to the transaction's end; asking again costs no round trip. (A lock
        first taken inside a savepoint that is rolled back would be given up: the store's SQL
        takes its locks before any savepoint.)"""
        if key in self._locked:
            return
        if self._now is None:  # the transaction's time comes with its first lock: no round trip
            found = self.raw.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)),"
                " extract(epoch FROM transaction_timestamp())",
                [key],
            ).fetchone()
            assert found is not None
            self._now = float(found[1])
        else:
            self.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
        self._locked.add(key)

    def now(self) -> float:
        if self._now is None:
            found = self.raw.execute(
                "SELECT extract(epoch FROM transaction_timestamp())"
            ).fetchone()
            assert found is not None
            self._now = float(found[0])
        return self._now
