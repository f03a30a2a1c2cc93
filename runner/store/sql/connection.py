"""What the store's queries need of a database connection, whatever the backend.

The queries of `runner.store.sql` are written once, in the SQL both SQLite and PostgreSQL
read (`?` placeholders, 0/1 flags, `COLLATE nocase`, `RETURNING`, `ON CONFLICT`), against this
small interface; each backend's adapter hands them its connection behind it:

- `execute` / `executemany`, returning rows that read by column name or position, and
  `insert`, returning the new row's id;
- `lock(key)`: serialise the transactions that change one repository's builds (SQLite's single
  writer does it already; PostgreSQL takes a transaction-scoped advisory lock);
- `now()`: the time of the transaction, from the database's clock where there is one, so the
  leases of several nodes are measured by one clock.
"""

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Row(Protocol):
    def __getitem__(self, key: int | str) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    def insert(self, sql: str, parameters: Sequence[object]) -> int:
        """Run an `INSERT` into a table with an `id` key; the new row's id."""
        ...

    def lock(self, key: str) -> None:
        """Until the transaction ends, no other transaction holds `key`'s lock."""
        ...

    def now(self) -> float:
        """Seconds since the epoch, as the transaction sees it."""
        ...
