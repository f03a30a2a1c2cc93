"""The cast of the REST API's integration tests, and the waits they share.

GitHub (the fake) knows four users of the organisation `octo-org`:
- alice: admin of `octo-org/hello` and an administrator of the organisation;
- carol: write (push) access, no admin, so Hobotnica cannot create the hook with her token;
- bob: read access only;
- mallory: a valid token that sees nothing.

`ApiWorld` wraps the real daemon (the `daemon` fixture) started against the fake, with a real
bare repository for `octo-org/hello`. Waiting is always a condition polled with a deadline.

`own_public_url` gives each daemon its own public URL. Build processes are found (and ended) by
the `HOBOTNICA_BUILD_URL` in their environment; daemons that share a public URL share build
URLs (`/builds/1` in every fresh database), so a test suite running beside this one on the same
host could end these tests' builds, and these tests its builds.
"""

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.settings import Settings
from tests.conftest import Daemon, DaemonFactory
from tests.support.api import Answer, ApiClient
from tests.support.fake_github import FakeGitHub
from tests.support.webhooks import headers

ALICE_TOKEN = "ghp_alice0123456789abcdefghijklmnopqrstu"
CAROL_TOKEN = "ghp_carol0123456789abcdefghijklmnopqrstu"
BOB_TOKEN = "ghp_bob00123456789abcdefghijklmnopqrstuv"
MALLORY_TOKEN = "ghp_mallory0123456789abcdefghijklmnopq"
UNKNOWN_TOKEN = "ghp_unknown0123456789abcdefghijklmnopq"
TOKENS = (ALICE_TOKEN, CAROL_TOKEN, BOB_TOKEN, MALLORY_TOKEN, UNKNOWN_TOKEN)

OWNER = "octo-org"
REPOSITORY = "octo-org/hello"
DEADLINE = 60.0


def own_public_url(settings: Settings) -> Settings:
    url = f"http://hobotnica-{secrets.token_hex(6)}.test:8081"
    return dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, public_url=url)
    )


def know_the_cast(fake_github: FakeGitHub) -> None:
    fake_github.add_user(ALICE_TOKEN, "alice")
    fake_github.add_user(CAROL_TOKEN, "carol")
    fake_github.add_user(BOB_TOKEN, "bob")
    fake_github.add_user(MALLORY_TOKEN, "mallory")
    fake_github.grant("alice", REPOSITORY, "ADMIN")
    fake_github.grant("carol", REPOSITORY, "WRITE")
    fake_github.grant("bob", REPOSITORY, "READ")
    fake_github.org_admins[OWNER] = {"alice"}


@dataclass
class ApiWorld:
    daemon: Daemon
    fake_github: FakeGitHub
    alice: ApiClient
    carol: ApiClient
    bob: ApiClient
    mallory: ApiClient

    @property
    def settings(self) -> Settings:
        return self.daemon.settings

    @property
    def public_url(self) -> str:
        return self.daemon.settings.server.public_url

    @property
    def data_dir(self) -> Path:
        return self.daemon.settings.data_dir

    async def register(
        self, repository: str = REPOSITORY, *, by: ApiClient | None = None, **extra: Any
    ) -> Answer:
        owner, name = repository.split("/")
        api = by or self.alice
        answer = await api.post("/api/repositories", {"owner": owner, "name": name, **extra})
        assert answer.status == 202, answer.body
        return answer

    async def register_ready(
        self, repository: str = REPOSITORY, *, by: ApiClient | None = None, **extra: Any
    ) -> Answer:
        registered = await self.register(repository, by=by, **extra)
        shown = await wait_for_repository(by or self.alice, repository, "ready")
        assert shown.body["status"] == "ready", shown.body
        return registered

    async def deliver_to(
        self, url: str, secret: str, payload: dict[str, Any], event: str = "push"
    ) -> tuple[int, Any]:
        assert self.daemon.client is not None
        body = json.dumps(payload).encode()
        path = url.removeprefix(self.public_url)
        response = await self.daemon.client.post(
            path, data=body, headers=headers(body, secret, event)
        )
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text

    async def build(self, build_id: int) -> dict[str, Any]:
        return await self.daemon.build(build_id)

    async def wait_for_build(
        self, build_id: int, condition: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while True:
            build = await self.build(build_id)
            if condition(build) or time.monotonic() > deadline:
                return build
            await asyncio.sleep(0.05)  # polling a condition, with a deadline


async def start_world(
    fake_github: FakeGitHub, daemon: DaemonFactory, settings: Settings
) -> ApiWorld:
    """The cast known to the fake GitHub, and a daemon of `settings` with its own public URL."""
    know_the_cast(fake_github)
    return make_world(await daemon(own_public_url(settings)), fake_github)


def make_world(daemon: Daemon, fake_github: FakeGitHub) -> ApiWorld:
    assert daemon.client is not None
    alice = ApiClient(daemon.client, ALICE_TOKEN, "alice")
    return ApiWorld(
        daemon=daemon,
        fake_github=fake_github,
        alice=alice,
        carol=alice.as_user(CAROL_TOKEN, "carol"),
        bob=alice.as_user(BOB_TOKEN, "bob"),
        mallory=alice.as_user(MALLORY_TOKEN, "mallory"),
    )


async def wait_for_repository(api: ApiClient, repository: str, wanted: str) -> Answer:
    """The repository as shown once its status is `wanted` (or at the deadline)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = await api.get(f"/api/repositories/{repository}")
        if answer.body.get("status") == wanted or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)  # polling a condition, with a deadline


async def eventually(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], deadline: float = DEADLINE
) -> bool:
    """Poll `condition` until it holds or the deadline passes; its last value."""
    until = time.monotonic() + deadline
    while True:
        value = condition()
        held = bool(await value) if asyncio.iscoroutine(value) else bool(value)
        if held or time.monotonic() > until:
            return held
        await asyncio.sleep(0.05)  # polling a condition, with a deadline
