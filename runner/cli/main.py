"""The `hobotnica` command: `serve`, `check-config`, `try`, `switch`, `migrate`, `copy-store`
and `hash-password`."""

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runner.core.config_loading import problems_error
from runner.core.errors import ConfigError
from runner.core.settings import Settings, load_settings
from runner.core.statuses import format_bytes

DEFAULT_CONFIG = Path("config/hobotnica.toml")
# What `make run` falls back to when there is no config of one's own yet.
EXAMPLE_CONFIG = Path("config/hobotnica.example.toml")
_Found = TypeVar("_Found")


def default_config() -> Path:
    """`config/hobotnica.toml`, else the example: the same choice `make run` makes."""
    if DEFAULT_CONFIG.exists() or not EXAMPLE_CONFIG.exists():
        return DEFAULT_CONFIG
    return EXAMPLE_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hobotnica", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon in the foreground")
    check = commands.add_parser("check-config", help="validate a config file and exit 0 or 1")
    try_ = commands.add_parser(
        "try", help="build a local repository's HEAD on the running daemon, without GitHub"
    )
    switch = commands.add_parser(
        "switch", help="blue/green: start the other instance, point nginx at it, drain the old"
    )
    migrate = commands.add_parser(
        "migrate", help="bring the store's schema up to date (serve does it too) and exit"
    )
    copy_store = commands.add_parser(
        "copy-store",
        help="copy an embedded (SQLite) installation's history into an empty PostgreSQL database",
        description="Copy the builds, deliveries, statuses, registrations, variables, secrets "
        "and build logs of an embedded installation into the PostgreSQL database that several "
        "nodes share, in one transaction. Stop the daemons that use the SQLite store first. "
        "The target is migrated first and must hold no builds or registrations yet.",
    )
    commands.add_parser(
        "hash-password",
        help="print a password hash for [ui] users (asks on the terminal, or reads stdin)",
    )
    for command in (serve, check, try_, switch, migrate, copy_store):
        command.add_argument(
            "--config",
            type=Path,
            default=default_config(),
            help=f"default: {DEFAULT_CONFIG}, else {EXAMPLE_CONFIG} (as `make run`)",
        )
    serve.add_argument(
        "--port", type=int, help="listen on this port instead of server.port (blue/green)"
    )
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=os.environ.get("HOBOTNICA_LOG_FORMAT", "auto"),
        help="auto: readable on a terminal, JSON lines otherwise (systemd); "
        "default from HOBOTNICA_LOG_FORMAT",
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask GitHub whether it accepts the App's JWT (github.app_id)",
    )
    try_.add_argument("path", type=Path, help="a local git repository with a Makefile")
    try_.add_argument("--deploy", action="store_true", help="also run make deploy if tests pass")
    try_.add_argument("--wait", action="store_true", help="wait for the build and print its result")
    copy_store.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="PATH",
        help="the SQLite store: its data directory (storage.data_dir), or its hobotnica.sqlite3; "
        "build logs are read from logs/ beside it",
    )
    copy_store.add_argument(
        "--to",
        metavar="DATABASE_URL",
        help="postgresql://USER@HOST:PORT/DB, without a password (~/.pgpass or PGPASSWORD); "
        "default: the config's storage.database_url (HOBOTNICA_DATABASE_URL wins)",
    )
    args = parser.parse_args(argv)
    if args.command == "copy-store":
        from runner.cli.copy_store import copy_store_command

        return copy_store_command(args.source, args.to, args.config, os.environ)
    if args.command == "hash-password":
        from runner.cli.hash_password import hash_password_command

        return hash_password_command(sys.stdin, sys.stdout, sys.stderr)

    try:
        settings = load_settings(args.config, os.environ)
        if args.command not in ("try", "migrate"):
            containment, store = _check_host(settings)
    except ConfigError as error:
        print(f"hobotnica: config error: {error}", file=sys.stderr)
        return 1

    if args.command == "check-config":
        checked = _check_config(settings, containment, store)
        if checked == 0 and args.online:
            from runner.cli.check_online import check_app_online

            return asyncio.run(check_app_online(settings))
        return checked
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "switch":
        from runner.cli.switch import switch as switch_instances

        return switch_instances(settings)
    if args.command == "try":
        from runner.cli.try_build import try_build

        return try_build(settings, args.path, deploy=args.deploy, wait=args.wait)

    from runner.cli.logs import configure_logging
    from runner.cli.serve import serve as serve_daemon
    from runner.cli.systemd import Notifier

    if args.port is not None:
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, port=args.port)
        )
    configure_logging(json={"auto": None, "json": True, "console": False}[args.log_format])
    with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
        return runner.run(serve_daemon(settings, Notifier(os.environ)))


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if settings.server.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None  # asyncio's own


def _check_host(settings: Settings) -> tuple[str, str]:
    """What the config asks of this host, each part checked so that one run names every problem.

    Returns where builds will be contained and which store is used, in words.
    """
    problems: list[str] = []

    def attempt(check: Callable[[Settings], _Found]) -> _Found | None:
        try:
            return check(settings)
        except ConfigError as error:
            problems.append(str(error))
            return None

    attempt(_check_sandbox)
    containment, store = attempt(_check_containment), attempt(_check_store)
    if problems:
        raise problems_error(problems, settings.config_path)
    assert containment is not None and store is not None  # nothing was refused
    return containment, store


def _check_sandbox(settings: Settings) -> None:
    """Fail closed: a sandbox that was asked for and cannot run stops start-up."""
    if settings.builds.sandbox == "bubblewrap":
        from runner.executor.sandbox import bubblewrap_problem

        problem = bubblewrap_problem()
        if problem:
            raise ConfigError(f'builds.sandbox = "bubblewrap", but {problem}')


def _check_containment(settings: Settings) -> str:
    """Fail closed: limits or a build user that were asked for and cannot be had stop start-up.

    Returns where builds will be contained, in words.
    """
    from runner.executor.account import check_account
    from runner.executor.cgroups import find_cgroup_tree

    builds = settings.builds
    tree, where = find_cgroup_tree(settings.server.public_url, make=False)
    limited = [name for name in ("memory_max", "tasks_max") if getattr(builds, name) is not None]
    if limited and (tree is None or not tree.limits):
        keys = " and ".join(f"builds.{name}" for name in limited)
        raise ConfigError(
            f"{keys} need cgroups with the memory and pids controllers, and here: {where}"
        )
    if builds.user is not None:
        problem = check_account(builds.user, settings.data_dir, settings.config_path)
        if problem:
            raise ConfigError(f"builds.user = {builds.user.name!r}, but {problem}")
    if tree is None:
        return f"no cgroup ({where}): builds are ended by process group, marker and sandbox"
    return f"each in a cgroup of its own: {where}"


def _check_store(settings: Settings) -> str:
    """Fail closed: a database that cannot be reached, or whose schema needs newer code."""
    from runner.store import schema_versions
    from runner.store.migrations import migrations

    backend = "postgresql" if settings.database_url else "sqlite"
    latest = len(migrations(backend))
    applied, required = schema_versions(settings)
    if required > latest:
        raise ConfigError(
            f"the store's schema (version {applied}) needs Hobotnica with schema version "
            f"{required} or later; this one has {latest}: upgrade this node"
        )
    where = (
        f"PostgreSQL {_without_user(settings.database_url)}"
        if settings.database_url
        else f"SQLite under {settings.data_dir}"
    )
    pending = f", {latest - applied} migration(s) to apply at start" if applied < latest else ""
    return f"{where}, schema version {applied} of {latest}{pending}"


def _without_user(url: str | None) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


async def _migrate(settings: Settings) -> int:
    from runner.store import open_store, schema_versions

    before, _ = schema_versions(settings)
    store = await open_store(settings)
    await store.close()
    after, _ = schema_versions(settings)
    print(f"schema version {after}" + (f" (was {before})" if after != before else ", up to date"))
    return 0


def _check_config(settings: Settings, containment: str, store: str) -> int:
    print(f"config OK: {settings.config_path}")
    print(f"  store: {store}")
    print(
        f"  listens on {settings.server.host}:{settings.server.port}, "
        f"public URL {settings.server.public_url}"
    )
    print(f"  data directory {settings.data_dir}")
    builds = settings.builds
    print(f"  builds: {builds.concurrency} at once, sandbox {builds.sandbox}")
    print(f"  builds run {containment}")
    if builds.memory_max is not None or builds.tasks_max is not None:
        memory = format_bytes(builds.memory_max) if builds.memory_max else "no limit"
        print(f"  one build may use: memory {memory}, tasks {builds.tasks_max or 'no limit'}")
    if builds.user is not None:
        print(f"  builds run as {builds.user.name} (uid {builds.user.uid})")
    print(
        f"  {len(settings.projects)} project(s): "
        + (", ".join(p.repository for p in settings.projects) or "none")
    )
    if settings.github.uses_development_secret:
        print("  WARNING: the development webhook secret is in use; not for production")
    github = settings.github
    if github.app is not None:
        where = github.private_key_file or "HOBOTNICA_GITHUB_APP_PRIVATE_KEY"
        print(f"  GitHub App {github.app_id}, private key from {where} (an RSA key)")
        if github.token:
            print("  github.token: used for repositories the App is not installed on")
        if github.report == "checks":
            print("  builds are reported as check runs (github.report)")
        if github.auto_register:
            owners = ", ".join(settings.api.allowed_owners) or "none (set api.allowed_owners)"
            print(f"  the App's installations register repositories of: {owners}")
    elif not github.token:
        print("  no GitHub token or App: statuses will be logged, not posted")
    print(f"  GitHub API {github.api_url}, repositories cloned from {github.git_url}")
    print(f"  pages: {_who_may_look(settings)}")
    if settings.ui.has_development_user:
        print("  WARNING: the example's development user `dev` may sign in; not for production")
    return 0


def _who_may_look(settings: Settings) -> str:
    users = len(settings.ui.users)
    if settings.ui.public:
        return f"public; {users} user(s) may cancel and re-run"
    if users:
        return f"sign-in required; {users} user(s)"
    return "sign-in required, but no [ui] users yet (add one: hobotnica hash-password)"


if __name__ == "__main__":
    sys.exit(main())
