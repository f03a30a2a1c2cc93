"""Real `hobotnica serve` processes for crash and multi-instance tests, and a timed fake GitHub.

- `TimedGitHub`: the shared `FakeGitHub` plus the arrival time of every status post (answered or
  scripted), and scripted answers whose headers are computed when the post arrives (a rate limit's
  `x-ratelimit-reset` is "now + 2" at answer time, not at scripting time).
- `serve_fake_github`: that fake on a loopback port, served inside the test's own event loop.
- `DaemonProcess`: writes a config TOML, starts the console script next to `sys.executable`
  (in a small environment of its own, plus any variables the test gives it) with stdout and
  stderr appended to a log file, waits (bounded) for `/health`, sends signed pushes, signals the
  process, and reads builds and their logs through `/api/builds/{id}`. With a `database_url` it
  is one node of several sharing that PostgreSQL database (`node_name` names it).

Everything here is async and never blocks the loop: the fake GitHub answers from the same loop.
"""

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web

from tests.conftest import SECRET, TOKEN
from tests.support.fake_github import FakeGitHub
from tests.support.processes import processes_with_marker
from tests.support.webhooks import headers, push_payload

HOBOTNICA = str(Path(sys.executable).parent / "hobotnica")
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
FINAL_STATES = frozenset({"success", "failure", "error"})

HeadersAt = Callable[[float], dict[str, str]]
# What GitHub says with these answers (the reporter may read the message).
SCRIPTED_MESSAGES = {
    403: "API rate limit exceeded for installation ID 1.",
    429: "You have exceeded a secondary rate limit. Please wait a few minutes before you try"
    " again.",
    502: "Server Error",
}


def free_port() -> int:
    """A free loopback port below the ephemeral range (32768+ on Linux).

    A daemon restarted on its port must get it back: an ephemeral port may meanwhile be the
    local end of some outgoing connection, or another test's `bind(0)`.
    """
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        fallback: int = probe.getsockname()[1]
        return fallback


# -- the fake GitHub, timed ------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One `POST …/statuses/{sha}` as it reached the fake, and what the fake answered."""

    at: float  # time.time() on arrival
    answered: int
    sha: str
    state: str
    context: str
    target_url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class TimedGitHub(FakeGitHub):
    arrivals: list[Arrival] = field(default_factory=list)
    timed_script: list[tuple[int, HeadersAt]] = field(default_factory=list)

    def script(self, status: int, headers_at: HeadersAt | None = None) -> None:
        """Answer one upcoming post with `status`; `headers_at(now)` builds its headers then."""
        self.timed_script.append((status, headers_at or (lambda _now: {})))

    async def _create_status(self, request: web.Request) -> web.Response:
        now = time.time()
        try:
            body: dict[str, Any] = await request.json()
        except ValueError:
            body = {}
        sha = request.match_info["sha"]

        def arrival(answered: int, hdrs: Mapping[str, str]) -> Arrival:
            return Arrival(
                at=now,
                answered=answered,
                sha=sha,
                state=str(body.get("state", "")),
                context=str(body.get("context", "")),
                target_url=str(body.get("target_url", "")),
                headers=dict(hdrs),
            )

        if self.timed_script:
            status, headers_at = self.timed_script.pop(0)
            hdrs = headers_at(now)
            self.arrivals.append(arrival(status, hdrs))
            message = SCRIPTED_MESSAGES.get(status, "scripted")
            return web.json_response({"message": message}, status=status, headers=hdrs)
        if self.scripted:
            status, hdrs = self.scripted[0]
            self.arrivals.append(arrival(status, hdrs))
        else:
            self.arrivals.append(arrival(201, {}))
        return await super()._create_status(request)


@asynccontextmanager
async def serve_fake_github() -> AsyncIterator[TimedGitHub]:
    fake = TimedGitHub()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


# -- the config file ---------------------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path,
    *,
    port: int,
    public_url: str,
    api_url: str,
    git_url: str,
    data_dir: Path,
    projects: list[dict[str, Any]],
    builds: Mapping[str, Any] | None = None,
    database_url: str | None = None,
    node_name: str | None = None,
    github: Mapping[str, Any] | None = None,
) -> None:
    """The daemon's TOML. `database_url` (PostgreSQL) makes it a node of a shared store, named
    `node_name`; without it the store is the embedded SQLite under `data_dir`."""
    server: dict[str, Any] = {"host": "127.0.0.1", "port": port, "public_url": public_url}
    if node_name is not None:
        server["node_name"] = node_name
    storage: dict[str, Any] = {"data_dir": str(data_dir), "min_free": 0}
    if database_url is not None:
        storage["database_url"] = database_url
    tables: dict[str, Mapping[str, Any]] = {
        "server": server,
        "github": {
            "api_url": api_url,
            "git_url": git_url,
            "webhook_secret": SECRET,
            "token": TOKEN,
            **(github or {}),
        },
        "storage": storage,
        "builds": {"concurrency": 2, "kill_grace": 2, "drain_timeout": 60, **(builds or {})},
        "ui": {"public": True},  # these tests read builds through /api/builds/{id}
    }
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
        lines.append("")
    for project in projects:
        lines.append("[[projects]]")
        lines += [f"{key} = {_toml(value)}" for key, value in project.items()]
        lines.append("")
    path.write_text("\n".join(lines))


# -- the daemon --------------------------------------------------------------------------------


class DaemonProcess:
    """One `hobotnica serve` process, restartable on the same config (and so data dir)."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        fake: FakeGitHub,
        git_url: str,
        data_dir: Path,
        projects: list[dict[str, Any]],
        public_url: str | None = None,
        builds: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        database_url: str | None = None,
        node_name: str | None = None,
        github: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.database_url = database_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.public_url = public_url or self.base
        self.data_dir = data_dir
        self.config = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.home = workdir / f"{name}-home"
        self.home.mkdir(parents=True, exist_ok=True)
        # The process's whole environment: a small base, plus what the test adds or replaces.
        self.environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            **(environment or {}),
        }
        write_config(
            self.config,
            port=self.port,
            public_url=self.public_url,
            api_url=fake.url,
            git_url=git_url,
            data_dir=data_dir,
            projects=projects,
            builds=builds,
            database_url=database_url,
            node_name=node_name,
            github=github,
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        self._log_offset = 0

    # lifecycle

    async def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                [HOBOTNICA, "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment,
            )
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until /health answers 200 and this process (not another on the port) is listening."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            if await self.health() == 200 and self._listening():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not become healthy:\n{self.log_tail()}")

    def _listening(self) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b'"hobotnica is listening"' in log.read()

    def unreachable(self, error: BaseException) -> AssertionError:
        code = None if self.process is None else self.process.poll()
        return AssertionError(
            f"{self.name} unreachable ({error!r}); exit status {code}:\n{self.log_tail()}"
        )

    async def health(self) -> int | None:
        try:
            async with self.session.get(
                f"{self.base}/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit in {timeout} s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)
        return code

    async def kill(self) -> None:
        """SIGKILL, as a crash or an OOM killer would, and reap it."""
        self.signal(signal.SIGKILL)
        await self.wait_exit(10.0)

    async def close(self) -> None:
        """Teardown: end the process if it still runs, and what its builds left; the session.

        Check for leftover build processes before this: it ends them.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await self.wait_exit(10.0)
        for pid in processes_with_marker_prefix(self.public_url):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self.session.close()

    # what it logged

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def finished_build_ids(self) -> list[int]:
        """Ids of the builds this daemon (over all its runs) logged as finished."""
        return [e["build_id"] for e in self.log_events() if e.get("event") == "build finished"]

    # HTTP

    async def push(
        self,
        repository: str,
        sha: str,
        *,
        branch: str,
        delivery: str | None = None,
        default_branch: str = "main",
    ) -> tuple[int, dict[str, Any]]:
        """A signed push webhook; raises aiohttp.ClientError if the daemon is not there."""
        payload = push_payload(repository, sha, branch=branch, default_branch=default_branch)
        body = json.dumps(payload).encode()
        hdrs = headers(body, SECRET, "push", delivery or str(uuid.uuid4()))
        async with self.session.post(
            f"{self.base}/webhooks/github", data=body, headers=hdrs
        ) as response:
            text = await response.text()
            answer = json.loads(text) if text.startswith("{") else {"text": text}
            return response.status, answer

    async def build(self, build_id: int) -> dict[str, Any] | None:
        try:
            async with self.session.get(f"{self.base}/api/builds/{build_id}") as response:
                if response.status == 404:
                    return None
                assert response.status == 200, await response.text()
                data: dict[str, Any] = await response.json()
                return data
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self.unreachable(error) from error

    async def log(self, build_id: int) -> str:
        """The build's log as the API serves it (secrets masked)."""
        try:
            async with self.session.get(f"{self.base}/api/builds/{build_id}/log") as response:
                assert response.status == 200, await response.text()
                return await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise self.unreachable(error) from error

    async def all_builds(self) -> list[dict[str, Any]]:
        """Every build, read through this daemon's API.

        On SQLite ids come from AUTOINCREMENT and builds are never deleted here, so the scan
        goes from 1 up to the first missing id; a deploy is created in the same transaction
        that ends its test build, so a scan that sees the test final also sees the deploy (it
        has a higher id). A PostgreSQL sequence may skip a value (a transaction retried after a
        deadlock), so there the ids are listed from the database first.
        """
        if self.database_url is not None:
            builds = [await self.build(build_id) for build_id in await build_ids(self.database_url)]
            return [build for build in builds if build is not None]
        builds: list[dict[str, Any]] = []
        for build_id in range(1, 100_000):
            build = await self.build(build_id)
            if build is None:
                return builds
            builds.append(build)
        raise AssertionError("too many builds")


async def build_ids(database_url: str) -> list[int]:
    """Every build's id in a shared store, in order."""
    rows = await query(database_url, "SELECT id FROM builds ORDER BY id")
    return [int(row[0]) for row in rows]


async def query(
    database_url: str, sql: str, parameters: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """Rows of one read of a shared store (PostgreSQL), off the event loop."""

    def read() -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url, connect_timeout=10) as connection:
            return list(connection.execute(sql, parameters).fetchall())

    return await asyncio.to_thread(read)


def processes_with_marker_prefix(public_url: str) -> list[int]:
    """Live processes whose environment holds `HOBOTNICA_BUILD_URL={public_url}/builds/…`."""
    return processes_with_marker(f"{public_url}/builds/", prefix=True)
