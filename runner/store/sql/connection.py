"""What the store's queries need of a database connection, whatever the backend.

The queries of `runner.store.sql` are written once, in the SQL both SQLite and PostgreSQL
read (`?` placeholders, 0/1 flags, `COLLATE nocase`, `RETURNING`, `ON CONFLICT`), against this
small interface; each backend's adapter hands them its connection behind it:

- `execute`, returning rows that read by column name or position; `executemany`, and
  `execute_each`, which answers each run's rows: both run one statement for many rows of
  parameters in one round trip where the database is across a network (PostgreSQL's pipeline);
- `execute_together`: several statements, in order, in one round trip (what one of them
  reads cannot decide what the next one is);
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

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run `sql` for each row; inside a transaction, it may be sent with the next statement
        (so an error in it may surface there)."""
        ...

    def execute_each(self, sql: str, rows: Iterable[Sequence[object]]) -> list[list[Any]]:
        """Run `sql` once for each row of parameters, in order; the rows each run returned."""
        ...

    def execute_together(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[list[Any]]:
        """Run each (statement, parameters) in order; the rows each one returned."""
        ...

    def lock(self, key: str) -> None:
        """From the transaction's next statement to its end, no other transaction holds
        `key`'s lock."""
        ...

    def now(self) -> float:
        """Seconds since the epoch, as the transaction sees it."""
        ...
