"""One SQLite database: the connection, its schema, and its transactions.

Each write is one transaction (`BEGIN IMMEDIATE`, so several processes sharing the file — a
blue/green pair — are serialised by SQLite's own locking), durable before it returns (WAL with
`synchronous=FULL` fsyncs the log on every commit), which is what lets intake answer 2xx only
after a delivery is safe. Used from one thread only (`runner.store.sqlite.SQLiteStore`).
"""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

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


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Whether the last write transaction failed for want of space (or I/O): /health says so.
        self.write_failing = False
        self.write_failures = 0  # how many have, ever: deliveries refused meanwhile to catch up
        db = self.connection
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective on a new file only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        schema = resources.files("runner.store.sqlite").joinpath("schema.sql").read_text("utf-8")
        code = "\n".join(line.split("--", 1)[0] for line in schema.splitlines())
        with self.transaction() as transaction:
            for statement in code.split(";"):
                if statement.strip():
                    transaction.execute(statement)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.connection
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as error:
            # Also when COMMIT itself failed (disk full): never stay inside a transaction.
            if db.in_transaction:
                db.execute("ROLLBACK")
            if is_unavailable(error):
                self.write_failing = True
                self.write_failures += 1
            raise
        self.write_failing = False


def probe_write(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO leases (name, owner, expires) VALUES ('store-probe', '', ?)"
        " ON CONFLICT (name) DO UPDATE SET expires = excluded.expires",
        (time.time(),),
    )


def integrity_check(db: sqlite3.Connection) -> str:
    return str(db.execute("PRAGMA integrity_check").fetchone()[0])
