"""The store: every arrow of the data flow that crosses a restart goes through it.

`Store` (`runner.store.interface`) is what every stage sees; `open_store` gives the backend the
settings ask for: the embedded SQLite under the data directory (`runner.store.sqlite`), or the
PostgreSQL of `storage.database_url` that several nodes share (`runner.store.postgresql`).
"""

import contextlib

from runner.core.errors import ConfigError
from runner.core.settings import Settings
from runner.store.interface import PENDING_HOLD, Store
from runner.store.records import (
    Delivery,
    DeliveryOutcome,
    Hook,
    NotificationItem,
    OutboxItem,
    RecoveredBuild,
    RegisteredRepository,
    Registration,
    RepositoryStatus,
    Rerun,
    ScheduleRecord,
    Variables,
)

__all__ = [
    "PENDING_HOLD",
    "Delivery",
    "DeliveryOutcome",
    "Hook",
    "NotificationItem",
    "OutboxItem",
    "RecoveredBuild",
    "RegisteredRepository",
    "Registration",
    "RepositoryStatus",
    "Rerun",
    "ScheduleRecord",
    "Store",
    "Variables",
    "open_store",
]


async def open_store(settings: Settings) -> Store:
    """The store the settings name, its schema brought up to date."""
    if settings.database_url:
        from runner.store.postgresql import PostgresStore

        store = PostgresStore(settings.database_url)
        await store.open()
        return store
    from runner.store.sqlite import SQLiteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteStore.in_data_dir(settings.data_dir)


def schema_versions(settings: Settings) -> tuple[int, int]:
    """(latest version applied, oldest code version it requires) of the store the settings
    name, without changing it; (0, 0) for a store not made yet. Raises `ConfigError` when the
    database cannot be reached (check-config)."""
    query = "SELECT MAX(version), MAX(requires) FROM schema_migrations"
    if settings.database_url:
        import psycopg

        try:
            with psycopg.connect(settings.database_url, connect_timeout=10) as connection:
                exists = connection.execute("SELECT to_regclass('schema_migrations')").fetchone()
                row = connection.execute(query).fetchone() if exists and exists[0] else None
        except psycopg.Error as error:
            raise ConfigError(f"cannot reach storage.database_url: {_first_line(error)}") from None
    else:
        import sqlite3

        from runner.store.sqlite import database_path

        path = database_path(settings.data_dir)
        if not path.exists():
            return 0, 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                row = db.execute(query).fetchone()
            except sqlite3.OperationalError:  # made before schema versions existed
                row = None
    return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
