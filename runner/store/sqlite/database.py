"""One SQLite database file: the connection, its schema, and its transactions.

Each write is one transaction (`BEGIN IMMEDIATE`, so several processes sharing the file — a
blue/green pair — are serialised by SQLite's own locking; `lock` has nothing to add), durable
before it returns (WAL with `synchronous=FULL` fsyncs the log on every commit), which is what
lets intake answer 2xx only after a delivery is safe. Used from one thread only.
"""

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.store import migrations
from runner.store.sql.connection import Connection, Cursor

# Result codes that say "cannot write now", not "this is wrong": a full disk, an I/O error, a
# lock held past the busy timeout. Extended codes carry the primary one in their low byte.
_UNAVAILABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY}
_UNAVAILABLE |= {sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN}


def database_path(data_dir: Path) -> Path:
    return data_dir / "hobotnica.sqlite3"


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` is the store being unable to write now (retry later), not a bug."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE


def apply_migrations(db: Connection) -> list[int]:
    """Inside the caller's transaction: apply the migrations the file lacks; the versions."""
    return migrations.apply(db, "sqlite")


class SQLiteConnection:
    """`runner.store.sql.connection.Connection` over sqlite3."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.raw = connection

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        return self.raw.execute(sql, parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.raw.executemany(sql, rows)

    def execute_each(self, sql: str, rows: Iterable[Sequence[object]]) -> list[list[Any]]:
        return [self.raw.execute(sql, row).fetchall() for row in rows]

    def execute_together(
        self, statements: Sequence[tuple[str, Sequence[object]]]
    ) -> list[list[Any]]:
        return [self.raw.execute(sql, parameters).fetchall() for sql, parameters in statements]

    def lock(self, key: str) -> None:
        """The transaction holds the database's only write lock already."""

    def now(self) -> float:
        return time.time()


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        raw.row_factory = sqlite3.Row
        raw.execute("PRAGMA busy_timeout=30000")
        raw.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        self.connection: Connection = SQLiteConnection(raw)
        self._raw = raw
        self.migrate()

    def migrate(self) -> list[int]:
        """Apply the migrations this file lacks, in one transaction; the versions applied."""
        with self.transaction() as db:
            return apply_migrations(db)

    def close(self) -> None:
        self._raw.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        raw = self._raw
        try:
            raw.execute("BEGIN IMMEDIATE")
            yield self.connection
            raw.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed (disk full): never stay inside a transaction.
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise

    def give_space_back(self) -> None:
        """Outside a transaction: the file shrinks by the pages deletions freed."""
        self._raw.execute("PRAGMA incremental_vacuum")

    def integrity_check(self) -> str:
        return str(self._raw.execute("PRAGMA integrity_check").fetchone()[0])
