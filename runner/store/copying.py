"""Moving in: an embedded installation's history — its SQLite file and the build logs beside it —
copied into the PostgreSQL database that several nodes share (`hobotnica copy-store`).

- The source is opened exclusively (SQLite's EXCLUSIVE locking mode): a daemon that has the file
  open, even an idle one, makes the copy refuse, and no daemon can open it while the copy runs.
  Its schema is brought up to date first, as `serve` would. A build still `running` (its daemon
  was killed) is refused: the daemon recovers it when it starts again.
- The target is migrated and filled in one transaction: a failure anywhere leaves it as it was,
  schema included. The tables it copies into must be empty (none but `installation_secrets`,
  which a node fills at its first start; a row the target has there is kept).
- The schemas drive the copy: every table of the source but those in `NOT_COPIED`, every column
  of each; a table or column the target has no place for stops the copy before anything is
  written, so a later migration that adds a column cannot drop its data here silently.
- Ids are kept — build pages, the `target_url`s GitHub shows, redelivery dedup by delivery id —
  and the target's sequences are moved past them, and past ids SQLite handed out to builds
  pruned since, so a new build never takes an old build's page.
- A build's log file (`logs/{id}.log` beside the database) becomes its `log_chunks`, of the
  build's attempt, in chunks as a node ships them.
- Nothing here prints or logs a value: the summary counts rows and bytes, and errors name
  tables and columns (a database's error by its primary message only, never its detail).
"""

import dataclasses
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql

from runner.core.errors import ConfigError, HobotnicaError
from runner.core.links import log_path
from runner.store.postgresql import apply_migrations as migrate_target
from runner.store.sqlite.database import SQLiteConnection, database_path
from runner.store.sqlite.database import apply_migrations as migrate_source

# Tables of the source that stay behind, and why.
NOT_COPIED = {
    "schema_migrations": "each database has its own",
    "leases": "who does what now; nobody once the daemon is stopped",
}
# Tables a node fills at its first start (the session key): the target may have rows already.
NODE_MADE = frozenset({"installation_secrets"})
LOG_CHUNK_BYTES = 256 * 1024  # as a node ships a running build's log
LOCK_TIMEOUT = "30s"
CONNECT_TIMEOUT = 10
_LOG_NAME = re.compile(r"^(\d+)\.log$")


class CopyError(HobotnicaError):
    """The copy was refused or failed; the target is as it was."""


@dataclass(frozen=True)
class CopySummary:
    source: Path
    source_version: int
    target_version: int
    tables: dict[str, int]  # rows copied, in the source's order
    left_behind: tuple[str, ...]  # tables not copied (`NOT_COPIED`)
    log_files: int = 0
    log_bytes: int = 0
    log_chunks: int = 0
    orphan_logs: int = 0  # files of builds the store no longer has
    next_build_id: int = 1
    seconds: float = 0.0
    migrated: tuple[int, ...] = field(default=())  # the target's migrations applied


def source_database(path: Path) -> Path:
    """The SQLite file `path` names: the file itself, or the one in a data directory."""
    found = database_path(path) if path.is_dir() else path
    if not found.is_file():
        raise CopyError(f"no SQLite store at {found}")
    return found


def plan(source: Mapping[str, Sequence[str]], target: Mapping[str, Sequence[str]]) -> list[str]:
    """The tables to copy (each with all its columns), or why the target cannot take them."""
    missing = []
    for table, columns in source.items():
        if table in NOT_COPIED:
            continue
        if table not in target:
            missing.append(f"table {table}")
        else:
            missing += [f"column {table}.{c}" for c in columns if c not in target[table]]
    if missing:
        raise CopyError(
            f"the target's schema has no place for {', '.join(missing)}: "
            "use a Hobotnica whose PostgreSQL schema has them (nothing was copied)"
        )
    return [table for table in source if table not in NOT_COPIED]


def copy_store(source: Path, url: str) -> CopySummary:
    """Copy the SQLite store at `source` (file or data directory) into the database at `url`."""
    began = time.monotonic()
    path = source_database(source)
    db = _open_exclusively(path)
    try:
        source_version = _bring_up_to_date(db)
        db.execute("BEGIN")  # one snapshot (and nobody else writes: the lock is ours)
        columns = _sqlite_columns(db)
        _refuse_running_builds(db)
        summary = _copy(db, path, url, source_version, columns)
    except sqlite3.Error as error:
        raise CopyError(f"reading {path}: {error} (nothing was copied)") from None
    except OSError as error:  # a log file that cannot be read
        raise CopyError(f"{error} (nothing was copied)") from None
    finally:
        db.close()
    return dataclasses.replace(summary, seconds=time.monotonic() - began)


def _open_exclusively(path: Path) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=rw"  # never create a file that is not there
    db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")  # the lock is kept until the connection closes
        db.execute("COMMIT")
    except sqlite3.OperationalError as error:
        db.close()
        if "locked" in str(error) or "busy" in str(error):
            raise CopyError(
                f"{path} is in use: stop the Hobotnica daemons that use it first "
                "(systemctl stop 'hobotnica@*'); nothing was copied"
            ) from None
        raise CopyError(f"cannot open {path}: {error}") from None
    except sqlite3.DatabaseError as error:
        db.close()
        raise CopyError(f"cannot open {path}: {error}") from None
    return db


def _bring_up_to_date(db: sqlite3.Connection) -> int:
    db.execute("BEGIN IMMEDIATE")
    try:
        migrate_source(SQLiteConnection(db))
    except ConfigError as error:
        db.execute("ROLLBACK")
        raise CopyError(f"the SQLite store: {error}") from None
    db.execute("COMMIT")
    return int(db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])


def _sqlite_columns(db: sqlite3.Connection) -> dict[str, list[str]]:
    tables = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        " ORDER BY rowid"
    ).fetchall()
    return {
        name: [row[0] for row in db.execute("SELECT name FROM pragma_table_info(?)", (name,))]
        for (name,) in tables
    }


def _refuse_running_builds(db: sqlite3.Connection) -> None:
    running = [row[0] for row in db.execute("SELECT id FROM builds WHERE state = 'running'")]
    if running:
        shown = ", ".join(str(i) for i in running[:5]) + (", …" if len(running) > 5 else "")
        raise CopyError(
            f"build(s) {shown} are still running: start the daemon on this store once so it "
            "recovers them, stop it (it lets its builds finish), then copy; nothing was copied"
        )


def _copy(
    db: sqlite3.Connection,
    path: Path,
    url: str,
    source_version: int,
    source_columns: dict[str, list[str]],
) -> CopySummary:
    try:
        with (
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as target,
            target.transaction(),
        ):
            target.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            migrated = migrate_target(target)
            tables = plan(source_columns, _postgres_columns(target))
            _lock_and_check_empty(target, tables)
            copied = {
                table: _copy_table(db, target, table, source_columns[table]) for table in tables
            }
            logs = _copy_logs(db, target, path.parent, "log_chunks" in tables)
            next_build_id = _move_sequences_on(db, target, tables)
            version = int(_one(target.execute("SELECT MAX(version) FROM schema_migrations")))
    except errors.LockNotAvailable:
        raise CopyError(
            f"waited {LOCK_TIMEOUT} for the target's tables: a node is using that database; "
            "nothing was copied"
        ) from None
    except ConfigError as error:
        raise CopyError(f"the target: {error}") from None
    except psycopg.Error as error:
        raise CopyError(f"PostgreSQL: {_first_line(error)} (nothing was copied)") from None
    return CopySummary(
        source=path,
        source_version=source_version,
        target_version=version,
        tables=copied,
        left_behind=tuple(t for t in source_columns if t in NOT_COPIED),
        next_build_id=next_build_id,
        migrated=tuple(migrated),
        **logs,
    )


def _postgres_columns(target: "psycopg.Connection[Any]") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table, column in target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        found.setdefault(table, []).append(column)
    return found


def _lock_and_check_empty(target: "psycopg.Connection[Any]", tables: list[str]) -> None:
    """No node writes to them until the copy commits; and they hold nothing yet."""
    names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
    target.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(names))
    filled = [
        table
        for table in tables
        if table not in NODE_MADE
        and _one(
            target.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(table)))
        )
    ]
    if filled:
        raise CopyError(
            f"the target database is not empty (rows in {', '.join(filled)}): copy into a new "
            "database that no node has stored anything in; nothing was copied"
        )


def _copy_table(
    db: sqlite3.Connection, target: "psycopg.Connection[Any]", table: str, columns: list[str]
) -> int:
    listed = ", ".join(_quoted(column) for column in columns)
    # Names from the file's own schema, quoted.
    rows: Iterable[Sequence[object]] = db.execute(f"SELECT {listed} FROM {_quoted(table)}")  # noqa: S608
    names = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    if table in NODE_MADE:  # the target's own rows win
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(table), names, sql.SQL(", ").join(sql.Placeholder() * len(columns))
        )
        return sum(target.execute(insert, row).rowcount for row in rows)
    count = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
    with target.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _copy_logs(
    db: sqlite3.Connection, target: "psycopg.Connection[Any]", data_dir: Path, has_chunks: bool
) -> dict[str, int]:
    """Each build's log file as its chunks, of its attempt; a build with chunks keeps them."""
    shipped = (
        {row[0] for row in db.execute("SELECT DISTINCT build_id FROM log_chunks")}
        if has_chunks
        else set()
    )
    files = chunks = size = 0
    builds = set()
    statement = "COPY log_chunks (build_id, attempt, start, data) FROM STDIN"
    with target.cursor().copy(statement) as copy:
        for build_id, attempt in db.execute("SELECT id, attempt FROM builds ORDER BY id"):
            builds.add(build_id)
            if build_id in shipped:
                continue
            try:
                log = log_path(data_dir, build_id).open("rb")
            except FileNotFoundError:
                continue
            with log:
                files += 1
                start = 0
                while chunk := log.read(LOG_CHUNK_BYTES):
                    copy.write_row((build_id, attempt, start, chunk))
                    start += len(chunk)
                    chunks += 1
                size += start
    folder = log_path(data_dir, 0).parent
    names = (_LOG_NAME.match(p.name) for p in folder.iterdir()) if folder.is_dir() else iter(())
    orphans = sum(1 for m in names if m is not None and int(m.group(1)) not in builds)
    return {"log_files": files, "log_bytes": size, "log_chunks": chunks, "orphan_logs": orphans}


def _move_sequences_on(
    db: sqlite3.Connection, target: "psycopg.Connection[Any]", tables: list[str]
) -> int:
    """Past every id copied, and every id SQLite handed out (a pruned build's too); the next
    build's id."""
    handed_out = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    next_build_id = 1
    for table, column in target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
        " AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"
    ).fetchall():
        if table not in tables:
            continue
        copied = _one(
            target.execute(
                sql.SQL("SELECT MAX({}) FROM {}").format(
                    sql.Identifier(column), sql.Identifier(table)
                )
            )
        )
        highest = max(int(copied or 0), int(handed_out.get(table) or 0))
        if highest > 0:
            target.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), %s)",
                [sql.Identifier(table).as_string(target), column, highest],
            )
        if table == "builds":
            next_build_id = highest + 1
    return next_build_id


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one(cursor: "psycopg.Cursor[Any]") -> Any:
    """The first column of a query's one row."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _first_line(error: Exception) -> str:
    """A database error's primary message: never its detail, which may quote a row's values."""
    diag = getattr(error, "diag", None)
    text = (getattr(diag, "message_primary", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__
