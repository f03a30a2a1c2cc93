"""`hobotnica copy-store`: an embedded installation moved into PostgreSQL, as its users see it
afterwards — the same builds and pages, logs, registrations, variables and secrets, redelivery
dedup, new ids past the old — and the refusals that keep a target from being half written."""

import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from runner.cli.main import main
from runner.core.links import log_path
from runner.core.models import Build
from runner.store import Registration, Store
from runner.store.copying import CopyError, plan
from runner.store.postgresql import PostgresStore
from runner.store.sqlite import SQLiteStore, database_path
from tests.support.postgres import session_cluster
from tests.support.stores import (
    FAILURE,
    LEASE,
    NOW,
    OWNER,
    REPO,
    deliver,
    post_one,
    record_delivery,
    request,
    run_to_end,
)
from tests.test_check_config import EXAMPLE_CONFIG, clean_environment, hobotnica_script

SECRET_VALUE = "s3cret-value-never-printed-0123"
TOKEN = "ghp_registrant_token_never_printed"
WEBHOOK_SECRET = "per-repository-webhook-secret-0123"
REGISTERED = "octo-org/app"
# Over one chunk (256 KiB), not a multiple of it, and not text.
BIG_LOG = bytes(range(256)) * 2600 + b"\x1b[31mred\x1b[0m done\n"


@dataclass
class Installation:
    """An embedded installation's data directory, and what its store answered before the move."""

    data_dir: Path
    builds: dict[int, Build]
    pruned_id: int
    pending_statuses: int


async def fill(data_dir: Path) -> Installation:
    store = SQLiteStore.in_data_dir(data_dir)
    try:
        (test,) = await deliver(store, "delivery-1", request(1, deploy_after_test=True))
        deploy = await run_to_end(store, test)
        assert deploy is not None
        await post_one(store)
        await run_to_end(store, deploy)
        await record_delivery(
            store, delivery_id="delivery-2", event="push", hook_id="77", received_at=NOW,
            outcome="accepted", requests=[request(2, branch="feature")], hook_repository=REPO,
        )  # fmt: skip
        (failing,) = await store.list_builds(REPO, branch="feature", limit=1)
        await run_to_end(store, failing.id, FAILURE)
        (queued,) = await deliver(store, "delivery-3", request(3, branch="other"))
        (pruned,) = await deliver(store, "delivery-4", request(4, repository="octo/old"))
        await store.register(
            Registration(
                repository=REGISTERED, webhook_uid="uid-1", webhook_secret=WEBHOOK_SECRET,
                default_branch="main", deploy_branch=None, deploy_enabled=True, timeout=600,
                registered_by="alice", token=TOKEN,
            )
        )  # fmt: skip
        await store.set_registration_status(REGISTERED, "ready")
        await store.replace_env("octo-org", {"LEVEL": "production", "REGION": "eu"})
        await store.replace_env(REGISTERED, {"LEVEL": "staging"})
        await store.put_secret(REGISTERED, "API_KEY", SECRET_VALUE)
        ids = [test, deploy, failing.id, queued]
        builds = await store.get_builds(ids)
        pending = await store.pending_status_count()
    finally:
        await store.close()
    # Retention deleted the newest build since: its id is never handed out again.
    with closing(sqlite3.connect(database_path(data_dir))) as db, db:
        db.execute("DELETE FROM builds WHERE id = ?", (pruned,))
    logs = log_path(data_dir, 0).parent
    logs.mkdir(parents=True, exist_ok=True)
    log_path(data_dir, test).write_bytes(BIG_LOG)
    log_path(data_dir, failing.id).write_bytes(
        f"make: *** [test] Error 2 {SECRET_VALUE}\n".encode()
    )
    log_path(data_dir, pruned).write_bytes(b"a pruned build's log, left behind\n")
    return Installation(data_dir, builds, pruned, pending)


@pytest.fixture
async def installation(tmp_path: Path) -> Installation:
    return await fill(tmp_path / "var")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = PostgresStore(url, pool_size=2)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def copy_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # only what the command prints
    code = main(["copy-store", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def target_tables(url: str) -> int:
    with psycopg.connect(url) as db:
        found = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert found is not None
        return int(found[0])


async def test_the_moved_installation_answers_as_before(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database()

    code, out, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert (code, err) == (0, "")
    assert "builds" in out and "4 rows" in out and "variables" in out
    assert "logs" in out and "2 files" in out and "1 log file(s) of builds no longer kept" in out
    assert f"new builds start at id {installation.pruned_id + 1}" in out
    for value in (SECRET_VALUE, TOKEN, WEBHOOK_SECRET):
        assert value not in out
    async with opened(url) as store:
        ids = list(installation.builds)
        assert await store.get_builds(ids) == installation.builds
        listed = await store.list_builds(REPO)
        assert [b.id for b in listed] == sorted(ids, reverse=True)
        assert await store.pending_status_count() == installation.pending_statuses
        # The redelivery of a copied delivery is known; a new one gets an id past every old one.
        again = await record_delivery(
            store, delivery_id="delivery-1", event="push", hook_id="42", received_at=NOW,
            outcome="accepted", requests=[request(1)],
        )  # fmt: skip
        assert again.duplicate
        (new,) = await deliver(store, "delivery-after-the-move", request(5, branch="new"))
        assert new == installation.pruned_id + 1
        first = min(ids)
        assert await store.read_log(first, 0) == (installation.builds[first].attempt, BIG_LOG)
        assert (await store.read_log(first, len(BIG_LOG) - 5))[1] == BIG_LOG[-5:]
        failed = next(b for b in installation.builds.values() if b.request.branch == "feature")
        assert SECRET_VALUE.encode() in (await store.read_log(failed.id, 0))[1]
        assert await store.read_log(installation.pruned_id, 0) == (0, b"")
        # Registrations, their variables and secrets, and the hook deliveries came through.
        registered = await store.registration(REGISTERED)
        assert registered is not None and registered.status == "ready"
        assert (registered.token, registered.webhook_secret) == (TOKEN, WEBHOOK_SECRET)
        assert await store.registration_by_webhook("uid-1") == registered
        variables = await store.build_variables(registered)
        assert dict(variables.env) == {"LEVEL": "staging", "REGION": "eu"}
        assert dict(variables.secrets) == {"API_KEY": SECRET_VALUE}
        assert [(h.repository, h.hook_id) for h in await store.hooks()] == [(REPO, "77")]
        # The queued build runs on the new nodes; then the deploy lane is free as before.
        (claimed,) = await store.claim_builds(5, OWNER, LEASE)
        assert claimed.request.branch == "other"


async def test_the_users_view_with_the_configs_database(installation: Installation) -> None:
    """The console script, as an operator runs it: the target from the config's environment."""
    url = session_cluster().new_database()
    environ = clean_environment(HOBOTNICA_DATABASE_URL=url)

    result = subprocess.run(
        [hobotnica_script(), "copy-store", "--config", str(EXAMPLE_CONFIG),
         "--from", str(database_path(installation.data_dir))],
        env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert (result.returncode, result.stderr) == (0, ""), result
    print(result.stdout)  # the summary, for the notes (pytest -s)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"copied {database_path(installation.data_dir)} (schema version ")
    assert "to PostgreSQL 127.0.0.1:" in lines[0] and "applied now" in lines[0]
    assert "postgres@" not in result.stdout
    assert any(line.split()[:3] == ["builds", "4", "rows"] for line in lines)
    assert any(line.split()[:3] == ["repositories", "1", "row"] for line in lines)
    assert "not copied: leases" in result.stdout
    for value in (SECRET_VALUE, TOKEN, WEBHOOK_SECRET):
        assert value not in result.stdout
    async with opened(url) as store:
        assert await store.get_builds(list(installation.builds)) == installation.builds


async def test_a_target_with_history_is_refused_and_left_as_it_was(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database()
    async with opened(url) as store:  # a node that took a webhook already
        await deliver(store, "delivery-on-the-new-nodes", request(9))

    code, out, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("hobotnica: copy-store: ")
    assert "not empty (rows in deliveries, builds, outbox)" in err
    async with opened(url) as store:
        assert [b.request.sha for b in await store.list_builds(REPO)] == [request(9).sha]
        assert await store.registrations() == []


async def test_a_target_a_node_has_only_started_on_is_taken_and_keeps_its_session_key(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database()
    async with opened(url) as store:  # what a node does at its start
        key = await store.installation_secret("session-key", 32)

    code, _, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert (code, err) == (0, "")
    async with opened(url) as store:
        assert await store.installation_secret("session-key", 32) == key
        assert await store.get_builds(list(installation.builds)) == installation.builds


async def test_a_second_copy_into_the_same_database_is_refused(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database()
    assert copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)[0] == 0

    code, _, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert code == 1 and "not empty" in err and "repositories" in err


async def test_a_running_build_is_refused_before_the_target_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteStore.in_data_dir(tmp_path)
    (build_id,) = await deliver(store, "delivery-1", request(1))
    await store.claim_builds(1, OWNER, LEASE)  # and then the daemon was killed
    await store.close()
    url = session_cluster().new_database()

    code, _, err = copy_in_process(capsys, "--from", str(tmp_path), "--to", url)

    assert code == 1
    assert f"build(s) {build_id} are still running" in err and "nothing was copied" in err
    assert target_tables(url) == 0


async def test_a_store_in_use_by_a_daemon_is_refused(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database()
    daemon = SQLiteStore.in_data_dir(installation.data_dir)  # open and idle, as a daemon is
    try:
        await daemon.state_counts()
        code, _, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)
    finally:
        await daemon.close()

    assert code == 1 and "is in use: stop the Hobotnica daemons" in err
    assert target_tables(url) == 0


async def test_a_column_the_target_lacks_stops_the_copy_and_writes_nothing(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A later SQLite migration that adds a column without PostgreSQL's counterpart."""
    with closing(sqlite3.connect(database_path(installation.data_dir))) as db, db:
        db.execute("ALTER TABLE builds ADD COLUMN priority INTEGER")
        db.execute("CREATE TABLE artifacts (build_id INTEGER, name TEXT)")
    url = session_cluster().new_database()

    code, _, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert code == 1
    assert "no place for column builds.priority, table artifacts" in err
    assert target_tables(url) == 0  # not even the schema: one transaction


def test_the_plan_copies_every_column_or_nothing() -> None:
    source = {"builds": ["id", "state"], "leases": ["name"], "schema_migrations": ["version"]}
    assert plan(source, {"builds": ["id", "state", "added_later"]}) == ["builds"]
    with pytest.raises(CopyError, match=r"no place for column builds\.state: "):
        plan(source, {"builds": ["id"]})


async def test_a_password_in_the_url_is_refused_without_showing_it(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = session_cluster().new_database().replace("postgres@", "postgres:hunter2-pw@")

    code, out, err = copy_in_process(capsys, "--from", str(installation.data_dir), "--to", url)

    assert code == 1 and "--to must not carry a password" in err
    assert "hunter2-pw" not in out + err


def test_a_missing_store_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = copy_in_process(
        capsys, "--from", str(tmp_path / "nothing"), "--to", "postgresql://u@127.0.0.1/db"
    )

    assert code == 1
    assert err == f"hobotnica: copy-store: no SQLite store at {tmp_path / 'nothing'}\n"
    assert not (tmp_path / "nothing").exists()


def test_no_target_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOBOTNICA_DATABASE_URL", raising=False)
    code, _, err = copy_in_process(capsys, "--config", str(EXAMPLE_CONFIG), "--from", str(tmp_path))

    assert code == 1 and "no target: give --to postgresql://" in err
