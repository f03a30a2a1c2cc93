"""The store: every arrow of the data flow that crosses a restart goes through it.

`Store` (`runner.store.interface`) is what every stage sees; `open_store` gives the backend the
settings ask for — the embedded SQLite under the data directory (`runner.store.sqlite`).
"""

from runner.core.settings import Settings
from runner.store.interface import PENDING_HOLD, Store
from runner.store.records import (
    Delivery,
    DeliveryOutcome,
    Hook,
    OutboxItem,
    RecoveredBuild,
    RegisteredRepository,
    Registration,
    RepositoryStatus,
    Rerun,
    Variables,
)

__all__ = [
    "PENDING_HOLD",
    "Delivery",
    "DeliveryOutcome",
    "Hook",
    "OutboxItem",
    "RecoveredBuild",
    "RegisteredRepository",
    "Registration",
    "RepositoryStatus",
    "Rerun",
    "Store",
    "Variables",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    from runner.store.sqlite import SQLiteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteStore.in_data_dir(settings.data_dir)
