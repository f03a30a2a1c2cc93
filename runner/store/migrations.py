"""The store's schema, versioned: numbered SQL files per backend, applied once, in order.

`runner/store/{sqlite,postgresql}/migrations/NNNN_name.sql` are the versions; the table
`schema_migrations` says which are applied. At start (and with `hobotnica migrate`) the missing
ones are applied in one transaction under the backend's lock, so three nodes starting together
migrate once. Migrations only add (tables, columns, indexes): nodes of version N and N+1 run side
by side during a rolling upgrade. A migration that would break older code says so in a first
line `-- requires code of version N or later`; a node older than what the database requires
refuses to start, and `check-config` says why.
"""

import re
from dataclasses import dataclass
from importlib import resources

from runner.core.errors import ConfigError
from runner.store.sql.connection import Connection

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires code of version (\d+) or later", re.MULTILINE)

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, requires integer NOT NULL,"
    " applied_at double precision NOT NULL)"
)


# Nodes starting together: the first to take it migrates (SQLite's one writer serialises anyway).
MIGRATION_LOCK = "hobotnica schema migrations"


def apply(db: Connection, backend: str) -> list[int]:
    """Inside the caller's transaction: apply the migrations of `backend` the database lacks,
    once, whoever else starts now; the versions applied."""
    db.lock(MIGRATION_LOCK)
    db.execute(CREATE_TABLE)
    rows = db.execute("SELECT version, requires FROM schema_migrations").fetchall()
    required = max((row[1] for row in rows), default=0)
    todo = pending(migrations(backend), {row[0] for row in rows}, required)
    for migration in todo:
        for statement in statements(migration.sql):
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_migrations (version, name, requires, applied_at)"
            " VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, migration.requires, db.now()),
        )
    return [migration.version for migration in todo]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def requires(self) -> int:
        """The oldest code (schema version) that still works once this is applied."""
        found = _REQUIRES.search(self.sql)
        return int(found.group(1)) if found else 1


def migrations(backend: str) -> list[Migration]:
    """The migrations of `backend` ("sqlite", "postgresql"), in order."""
    folder = resources.files(f"runner.store.{backend}").joinpath("migrations")
    found = []
    for item in folder.iterdir():
        if (match := _NAME.match(item.name)) is not None:
            found.append(Migration(int(match.group(1)), match.group(2), item.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    assert versions == list(range(1, len(found) + 1)), f"{backend} migrations: gap in {versions}"
    return found


def statements(sql: str) -> list[str]:
    """The statements of a migration file (comments dropped; no `;` inside a statement)."""
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def pending(known: list[Migration], applied: set[int], required: int) -> list[Migration]:
    """What to apply, or `ConfigError` when the database needs newer code than this."""
    latest = known[-1].version if known else 0
    if required > latest:
        raise ConfigError(
            f"the database's schema needs Hobotnica with schema version {required} or later; "
            f"this one has {latest}: upgrade this node (nothing was changed)"
        )
    return [migration for migration in known if migration.version not in applied]
