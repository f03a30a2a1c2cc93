"""Build logs in the database, for the nodes that did not run the build, and the
installation's shared secrets.

The node running a build ships its log file in chunks, each from a byte offset; the file only
grows while the build runs, so (build, offset) names a chunk once and for all. A build run again
(another attempt) starts its log over: its old chunks go. Readers ask from the offset they have.
"""

import secrets as random

from runner.store.sql.connection import Connection


def append(db: Connection, build_id: int, attempt: int, start: int, data: bytes) -> None:
    db.execute("DELETE FROM log_chunks WHERE build_id = ? AND attempt < ?", (build_id, attempt))
    db.execute(
        "INSERT INTO log_chunks (build_id, attempt, start, data) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (build_id, start) DO NOTHING",
        (build_id, attempt, start, data),
    )


def read(db: Connection, build_id: int, start: int) -> tuple[int, bytes]:
    """(attempt, the log's bytes from `start`) as shipped so far; (0, b"") for none."""
    latest = db.execute(
        "SELECT MAX(attempt) FROM log_chunks WHERE build_id = ?", (build_id,)
    ).fetchone()[0]
    if latest is None:
        return 0, b""
    found = db.execute(
        "SELECT start, data FROM log_chunks WHERE build_id = ? AND attempt = ?"
        " AND start + length(data) > ? ORDER BY start",
        (build_id, latest, start),
    ).fetchall()
    data = bytearray()
    position = start
    for row in found:
        chunk_start, chunk = int(row["start"]), bytes(row["data"])
        if chunk_start > position:
            break  # a chunk not shipped yet: stop before the gap
        data += chunk[position - chunk_start :]
        position = chunk_start + len(chunk)
    return int(latest), bytes(data)


def installation_secret(db: Connection, name: str, size: int) -> bytes:
    """The installation's secret `name`, made (`size` random bytes) by the first node to ask."""
    db.execute(
        "INSERT INTO installation_secrets (name, value) VALUES (?, ?) ON CONFLICT (name)"
        " DO NOTHING",
        (name, random.token_bytes(size)),
    )
    found = db.execute("SELECT value FROM installation_secrets WHERE name = ?", (name,))
    return bytes(found.fetchone()[0])
