"""Repositories registered through the REST API, and their build variables.

Functions over one SQLite connection, each inside a transaction the store opens. Tokens and
secrets are stored so builds, clones and access checks can use them; they leave this module
only inside `RegisteredRepository.token` and `Variables.secrets`, whose reprs hide them.
"""

import json
from collections.abc import Mapping

from runner.store.records import (
    RegisteredRepository,
    Registration,
    RepositoryStatus,
    Variables,
)
from runner.store.sql.connection import Connection, Row
from runner.store.sql.rows import end_queued

STOPPED_DISABLED = "Stopped: the repository was disabled"
STOPPED_REMOVED = "Stopped: the repository was removed"


def get(db: Connection, repository: str) -> RegisteredRepository | None:
    row = db.execute("SELECT * FROM repositories WHERE repository = ?", (repository,)).fetchone()
    return None if row is None else _repository(row)


def status_token(db: Connection, repository: str) -> str | None:
    """The token a registered repository's statuses are posted with (a retired one for a
    while after its removal); None: none may be used."""
    row = db.execute(
        "SELECT token FROM repositories WHERE repository = ? UNION ALL"
        " SELECT token FROM retired_tokens WHERE repository = ? AND until >= ?",
        (repository, repository, db.now()),
    ).fetchone()
    return None if row is None else row["token"]


def by_webhook_uid(db: Connection, uid: str) -> RegisteredRepository | None:
    row = db.execute("SELECT * FROM repositories WHERE webhook_uid = ?", (uid,)).fetchone()
    return None if row is None else _repository(row)


def all_registered(db: Connection) -> list[RegisteredRepository]:
    rows = db.execute("SELECT * FROM repositories ORDER BY repository COLLATE nocase").fetchall()
    return [_repository(row) for row in rows]


def register(db: Connection, new: Registration) -> RegisteredRepository | None:
    """Insert `new` in status `cloning`; None when it is registered and not disabled.

    A disabled repository (its access was lost) is registered again in place: its variables are
    kept, its webhook gets the new uid and secret.
    """
    existing = get(db, new.repository)
    if existing is not None and existing.status != "disabled":
        return None
    db.execute("DELETE FROM repositories WHERE repository = ?", (new.repository,))
    db.execute("DELETE FROM retired_tokens WHERE repository = ?", (new.repository,))
    db.execute(
        "INSERT INTO repositories (repository, owner, webhook_uid, webhook_secret, status,"
        " default_branch, deploy_branch, deploy_enabled, timeout, registered_by, token,"
        " installation_id, created_at, access_checked_at)"
        " VALUES (?,?,?,?,'cloning',?,?,?,?,?,?,?,?,?)",
        (
            new.repository,
            new.repository.split("/")[0],
            new.webhook_uid,
            new.webhook_secret,
            new.default_branch,
            new.deploy_branch,
            new.deploy_enabled,
            new.timeout,
            new.registered_by,
            new.token,
            new.installation_id,
            db.now(),
            db.now(),
        ),
    )
    return get(db, new.repository)


def set_status(
    db: Connection,
    repository: str,
    status: RepositoryStatus,
    reason: str = "",
    *,
    only_from: RepositoryStatus | None = None,
) -> bool:
    """Move to `status`; with `only_from`, only a repository in that status moves."""
    query = "UPDATE repositories SET status = ?, status_reason = ? WHERE repository = ?"
    params: tuple[object, ...] = (status, reason[:500], repository)
    if only_from is not None:
        query += " AND status = ?"
        params += (only_from,)
    return db.execute(query, params).rowcount > 0


def disable(db: Connection, repository: str, reason: str, webhook_uid: str) -> list[int] | None:
    """Access is gone: no token kept, no webhook accepted, no build started or left running.

    Only the registration that was checked (`webhook_uid`): one made again meanwhile, with
    another token, is left alone (None). Returns the running builds asked to stop.
    """
    db.lock(repository.lower())
    changed = db.execute(
        "UPDATE repositories SET status = 'disabled', status_reason = ?, token = NULL"
        " WHERE repository = ? AND webhook_uid = ?",
        (reason[:500], repository, webhook_uid),
    ).rowcount
    if not changed:
        return None
    _end_queued_builds(db, repository, "Not built: the repository was disabled")
    return _stop_running_builds(db, repository, STOPPED_DISABLED)


def update_settings(
    db: Connection, repository: str, changes: Mapping[str, object]
) -> RegisteredRepository | None:
    allowed = {
        "deploy_branch",
        "deploy_enabled",
        "timeout",
        "schedule",
        "schedule_timezone",
        "schedule_branch",
        "notify",
    }
    assert set(changes) <= allowed, set(changes) - allowed
    for column, value in changes.items():
        if column == "notify":
            value = json.dumps(value) if value else ""
        db.execute(
            f"UPDATE repositories SET {column} = ? WHERE repository = ?",  # noqa: S608 - allowed
            (value, repository),
        )
    if "schedule" in changes and changes["schedule"] is None:  # set again later, it starts anew
        db.execute("DELETE FROM schedules WHERE repository = ?", (repository.lower(),))
    return get(db, repository)


def set_hook_id(db: Connection, repository: str, hook_id: str) -> None:
    db.execute("UPDATE repositories SET hook_id = ? WHERE repository = ?", (hook_id, repository))


def access_checked(db: Connection, repository: str, when: float, webhook_uid: str) -> None:
    db.execute(
        "UPDATE repositories SET access_checked_at = ? WHERE repository = ? AND webhook_uid = ?",
        (when, repository, webhook_uid),
    )


RETIRED_TOKEN_SECONDS = 600.0


def remove(db: Connection, repository: str) -> list[int]:
    """Forget a registration and its variables; returns the builds it left running.

    Its token is kept `RETIRED_TOKEN_SECONDS` longer (`status_token`), for the final statuses of
    the builds this stops.
    """
    db.lock(repository.lower())
    canonical = get(db, repository)
    if canonical is None:
        return []
    name = canonical.repository
    now = db.now()
    db.execute("DELETE FROM retired_tokens WHERE until < ?", (now,))
    if canonical.token:
        db.execute(
            "INSERT INTO retired_tokens (repository, token, until) VALUES (?, ?, ?)"
            " ON CONFLICT (repository) DO UPDATE SET token = excluded.token,"
            " until = excluded.until",
            (name, canonical.token, now + RETIRED_TOKEN_SECONDS),
        )
    db.execute("DELETE FROM repositories WHERE repository = ?", (name,))
    db.execute("DELETE FROM variables WHERE scope = ?", (name,))
    db.execute("DELETE FROM schedules WHERE repository = ?", (name.lower(),))
    _end_queued_builds(db, name, "Not built: the repository was removed")
    return _stop_running_builds(db, name, STOPPED_REMOVED)


def variables(db: Connection, scope: str) -> Variables:
    rows = db.execute(
        "SELECT secret, name, value FROM variables WHERE scope = ? ORDER BY name", (scope,)
    ).fetchall()
    return Variables(
        env={row["name"]: row["value"] for row in rows if not row["secret"]},
        secrets={row["name"]: row["value"] for row in rows if row["secret"]},
    )


def build_variables(db: Connection, registered: RegisteredRepository) -> Variables:
    """What its builds get: the owner's variables, overridden by the repository's own."""
    shared, own = variables(db, registered.owner), variables(db, registered.repository)
    return Variables(env={**shared.env, **own.env}, secrets={**shared.secrets, **own.secrets})


def with_build_variables(
    db: Connection, repository: str
) -> tuple[RegisteredRepository, Variables] | None:
    registered = get(db, repository)
    return None if registered is None else (registered, build_variables(db, registered))


def replace_env(db: Connection, scope: str, env: Mapping[str, str]) -> None:
    db.execute("DELETE FROM variables WHERE scope = ? AND secret = 0", (scope,))
    db.executemany(
        "INSERT INTO variables (scope, secret, name, value) VALUES (?, 0, ?, ?)",
        [(scope, name, value) for name, value in env.items()],
    )


def put_secret(db: Connection, scope: str, name: str, value: str) -> bool:
    """Store a secret; True when it is new."""
    existed = db.execute(
        "SELECT 1 FROM variables WHERE scope = ? AND secret = 1 AND name = ?", (scope, name)
    ).fetchone()
    db.execute(
        "INSERT INTO variables (scope, secret, name, value) VALUES (?, 1, ?, ?) ON CONFLICT"
        " (scope, secret, name) DO UPDATE SET value = excluded.value",
        (scope, name, value),
    )
    return existed is None


def delete_secret(db: Connection, scope: str, name: str) -> bool:
    deleted = db.execute(
        "DELETE FROM variables WHERE scope = ? AND secret = 1 AND name = ?", (scope, name)
    )
    return deleted.rowcount > 0


def _end_queued_builds(db: Connection, repository: str, description: str) -> None:
    for row in db.execute(
        "SELECT * FROM builds WHERE repository = ? AND state = 'queued'", (repository,)
    ).fetchall():
        end_queued(db, row, description)


def _stop_running_builds(db: Connection, repository: str, reason: str) -> list[int]:
    """Ask the daemons running the repository's builds to stop them (read at their heartbeat)."""
    rows = db.execute(
        "SELECT id FROM builds WHERE repository = ? AND state = 'running'", (repository,)
    ).fetchall()
    db.execute(
        "UPDATE builds SET stop_reason = ? WHERE repository = ? AND state = 'running'"
        " AND stop_reason IS NULL",
        (reason, repository),
    )
    return [int(row["id"]) for row in rows]


def _repository(row: Row) -> RegisteredRepository:
    return RegisteredRepository(
        repository=row["repository"],
        webhook_uid=row["webhook_uid"],
        status=row["status"],
        status_reason=row["status_reason"],
        default_branch=row["default_branch"],
        deploy_branch=row["deploy_branch"],
        deploy_enabled=bool(row["deploy_enabled"]),
        timeout=row["timeout"],
        registered_by=row["registered_by"],
        created_at=row["created_at"],
        access_checked_at=row["access_checked_at"],
        hook_id=row["hook_id"],
        token=row["token"],
        webhook_secret=row["webhook_secret"],
        installation_id=row["installation_id"],
        schedule=row["schedule"],
        schedule_timezone=row["schedule_timezone"],
        schedule_branch=row["schedule_branch"],
        notify=json.loads(row["notify"]) if row["notify"] else {},
    )
