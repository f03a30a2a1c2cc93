"""A real PostgreSQL for the tests: Debian's server, a throwaway cluster per test session.

The cluster lives in a temporary directory, listens on loopback only (a free port) and on a
socket in that directory, trusts local connections, and is stopped and deleted at the end of
the session. `initdb` refuses to run as root, so as root it runs as the `postgres` user (the
Debian package creates it). Each test gets a database of its own, copied from a template.

Where PostgreSQL is not installed, the tests that need it are skipped with the reason; in CI
(`CI=true`, set by `.ci/run`, which installs it) they fail instead.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.privileges import in_ci

START_TIMEOUT = 60


def server_binaries() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.iterdir() if (p / "bin" / "initdb").exists()) if root.is_dir() else [],
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    if versions:
        return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class Cluster:
    bin: Path
    directory: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout

    def new_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_cluster_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """`durable`: commits are fsync'd as in production (the benchmark); tests need not."""
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    directory = Path(tempfile.mkdtemp(prefix="hobotnica-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    port = _free_port()
    subprocess.run(
        _as_cluster_owner(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]
        ),
        check=True, capture_output=True, timeout=START_TIMEOUT,
    )  # fmt: skip
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
        " -c max_connections=200 -c shared_buffers=64MB"
    ) + ("" if durable else " -c fsync=off")
    subprocess.run(
        _as_cluster_owner(
            [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
             str(directory / "server.log"), "-w", "-t", str(START_TIMEOUT), "start"]
        ),
        check=True, capture_output=True, timeout=START_TIMEOUT + 10,
    )  # fmt: skip
    try:
        yield Cluster(binaries, directory, port)
    finally:
        subprocess.run(
            _as_cluster_owner(
                [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            ),
            capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)


_session = contextlib.ExitStack()
_cluster: Cluster | None = None


def session_cluster() -> Cluster:
    """One cluster for the whole test session, started at first use (`stop_session_cluster`
    at the session's end stops it)."""
    global _cluster
    if _cluster is None:
        _cluster = _session.enter_context(throwaway_cluster())
    return _cluster


def stop_session_cluster() -> None:
    global _cluster
    _session.close()
    _cluster = None
