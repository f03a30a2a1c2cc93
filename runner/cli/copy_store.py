"""`hobotnica copy-store --from PATH [--to URL | --config FILE]`: move an embedded installation
into the PostgreSQL database several nodes share (`runner.store.copying`).

The target's URL follows the config's rule: no password in it (libpq reads one from ~/.pgpass
or PGPASSWORD), so none reaches `ps` or a shell history. What is printed is counts and the
database's host, port and name; a failure is one line on stderr and exit status 1.
"""

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from runner.core.errors import ConfigError
from runner.core.setting_checks import postgresql_url
from runner.core.settings import load_settings
from runner.core.statuses import format_bytes
from runner.store.copying import NOT_COPIED, CopyError, CopySummary, copy_store


def copy_store_command(
    source: Path,
    to: str | None,
    config: Path,
    environ: Mapping[str, str],
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        url = _target(to, config, environ)
        summary = copy_store(source, url)
    except (ConfigError, CopyError) as error:
        print(f"hobotnica: copy-store: {error}", file=err)
        return 1
    for line in describe(summary, url):
        print(line, file=out)
    return 0


def _target(to: str | None, config: Path, environ: Mapping[str, str]) -> str:
    if to is not None:
        url = postgresql_url("--to", to) if to else None
    else:
        url = load_settings(config, environ).database_url
    if not url:
        raise ConfigError(
            "no target: give --to postgresql://USER@HOST:PORT/DB, or set storage.database_url "
            f"(or HOBOTNICA_DATABASE_URL) for the config {config}"
        )
    return url


def describe(summary: CopySummary, url: str) -> list[str]:
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    applied = summary.migrated
    migrated = f"; migrations {applied[0]} to {applied[-1]} applied now" if applied else ""
    lines = [
        f"copied {summary.source} (schema version {summary.source_version}) to PostgreSQL "
        f"{where} (schema version {summary.target_version}{migrated}) in {summary.seconds:.1f} s:"
    ]
    width = max(map(len, summary.tables), default=0)
    lines += [
        f"  {table:<{width}}  {rows:>9,} row{'' if rows == 1 else 's'}"
        for table, rows in summary.tables.items()
    ]
    lines.append(
        f"  {'logs':<{width}}  {summary.log_files:>9,} files, {format_bytes(summary.log_bytes)}"
        f" in {summary.log_chunks:,} chunks"
    )
    if summary.orphan_logs:
        lines.append(
            f"  ({summary.orphan_logs:,} log file(s) of builds no longer kept: left behind)"
        )
    lines += [
        f"  not copied: {table} ({NOT_COPIED[table]})"
        for table in summary.left_behind
        if table != "schema_migrations"  # each database's own, obviously
    ]
    lines.append(f"new builds start at id {summary.next_build_id}")
    return lines
