"""Fixtures: settings pointing at loopback fakes and real `file://` remotes, and the daemon."""

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from runner.app import create_app
from runner.core.settings import Settings, parse_settings
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote
from tests.support.postgres import stop_session_cluster
from tests.support.webhooks import headers

SECRET = "It's a Secret to Everybody"
TOKEN = "ghs_testtoken0123456789abcdefABCDEF"
# Unique to this test run: builds' process markers hold it, and a test that ends a build's
# leftovers by marker must never end the builds of another test run on the same machine.
PUBLIC_URL = f"http://run-{os.getpid()}.hobotnica.test:8081"

# What the daemon's own environment holds in tests: what builds inherit, and what they must not.
DAEMON_ENVIRONMENT = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/root"),
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "VIRTUAL_ENV": "/opt/daemon-venv",
    "PYTHONPATH": "/opt/daemon-lib",
    "POETRY_HOME": "/opt/poetry",
    "AWS_SECRET_ACCESS_KEY": "daemon-only-credential",
}


@pytest.fixture
async def fake_github(aiohttp_server: Any) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release_all()  # a test that failed while holding posts must not stall the server's end


@pytest.fixture
def remote_root(tmp_path: Path) -> Path:
    root = tmp_path / "remotes"
    root.mkdir()
    return root


@pytest.fixture
def remote(remote_root: Path) -> Remote:
    return make_remote(remote_root, "octo/app")


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, fake_github: FakeGitHub, remote_root: Path) -> SettingsFactory:
    def make(
        projects: list[dict[str, Any]] | None = None,
        builds: dict[str, Any] | None = None,
        pull_requests: dict[str, Any] | None = None,
        token: str | None = TOKEN,
        ui: dict[str, Any] | None = None,
        api: dict[str, Any] | None = None,
    ) -> Settings:
        github: dict[str, Any] = {
            "api_url": fake_github.url,
            "git_url": remote_root.as_uri(),
            "webhook_secret": SECRET,
        }
        if token:
            github["token"] = token
        raw = {
            "server": {"host": "127.0.0.1", "port": 8081, "public_url": PUBLIC_URL},
            "github": github,
            # No free-space floor: these tests are not about it (tests/test_full_disk.py is),
            # and a test machine may have less than the default GiB free.
            "storage": {"data_dir": str(tmp_path / "var"), "min_free": 0},
            "builds": {"kill_grace": 2, "drain_timeout": 10, **(builds or {})},
            "pull_requests": pull_requests or {},
            # Pages open to all unless a test is about signing in (tests/test_pages_auth.py).
            "ui": ui if ui is not None else {"public": True},
            # The owners the API tests register repositories of (tests/test_api_*.py).
            "api": api if api is not None else {"allowed_owners": ["octo-org"]},
            "projects": projects if projects is not None else [{"repository": "octo/app"}],
        }
        return parse_settings(raw, DAEMON_ENVIRONMENT, base_dir=tmp_path)

    return make


class Daemon:
    """The real app on a real loopback port, restartable on the same data directory."""

    def __init__(self, client_factory: Any, settings: Settings) -> None:
        self._client_factory = client_factory
        self.settings = settings
        self.client: TestClient[web.Request, web.Application] | None = None

    async def start(self) -> "Daemon":
        self.client = await self._client_factory(create_app(self.settings))
        return self

    async def stop(self) -> None:
        assert self.client is not None
        await self.client.close()
        self.client = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def post_raw(self, body: bytes, hdrs: dict[str, str]) -> tuple[int, Any]:
        assert self.client is not None
        response = await self.client.post("/webhooks/github", data=body, headers=hdrs)
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text

    async def deliver(
        self, event: str, payload: dict[str, Any], delivery: str | None = None
    ) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        return await self.post_raw(body, headers(body, SECRET, event, delivery))

    async def build(self, build_id: int) -> dict[str, Any]:
        assert self.client is not None
        response = await self.client.get(f"/api/builds/{build_id}")
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data

    async def log(self, build_id: int) -> str:
        assert self.client is not None
        response = await self.client.get(f"/api/builds/{build_id}/log")
        return await response.text()

    async def page(self, build_id: int) -> str:
        assert self.client is not None
        response = await self.client.get(f"/builds/{build_id}")
        assert response.status == 200
        return await response.text()


DaemonFactory = Callable[..., Any]


@pytest.fixture
def daemon(fake_github: FakeGitHub, aiohttp_client: Any) -> DaemonFactory:
    # fake_github comes first so it is set up before aiohttp_client and torn down after it:
    # the daemon's shutdown flushes statuses to the fake, which must still be there.
    async def start(settings: Settings) -> Daemon:
        return await Daemon(aiohttp_client, settings).start()

    return start


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_session_cluster()  # the throwaway PostgreSQL cluster, if a test started it
