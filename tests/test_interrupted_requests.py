"""A change is made whole or not at all, whoever stops waiting for it.

A client that disconnects in the middle of a registration or a secret's PUT cancels its
request's handler (`handler_cancellation`, as `hobotnica serve` runs); the non-idempotent
methods are shielded, so the change goes on to its end — and the log says that it outlived
its client, with the status it ended with. The client here is a raw socket, closed while
the fake GitHub holds the daemon's call in the middle of the handler.
"""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from runner.app import GITHUB_ACCESS
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.api_world import ALICE_TOKEN, REPOSITORY, ApiWorld, eventually, start_world
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.logcapture import daemon_log

ONE = f"/api/repositories/{REPOSITORY}"
SECRET_VALUE = "a-secret-sent-by-a-client-that-left"
# Long enough for a clone on a loaded machine; a change cut off never gets there.
SETTLE = 30.0


@pytest.fixture
def hello(remote_root: Path) -> Remote:
    remote = make_remote(remote_root, REPOSITORY)
    remote.commit({"Makefile": makefile(test="@echo ok")})
    return remote


@pytest.fixture
async def world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    return await start_world(fake_github, daemon, make_settings())


def connections(d: Daemon) -> int:
    assert d.client is not None and d.client.server.runner is not None
    server = d.client.server.runner.server
    assert server is not None
    return len(server.connections)


async def send_then_leave(
    world: ApiWorld, method: str, path: str, body: dict[str, Any], held: str
) -> None:
    """Send a request on a socket of its own; close it while GitHub holds `held`; let go."""
    d = world.daemon
    gate = world.fake_github.hold_answers(held)
    before = connections(d)
    assert d.client is not None
    reader, writer = await asyncio.open_connection(d.client.host, d.client.port)
    data = json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {d.client.host}\r\n"
        f"Authorization: Bearer {ALICE_TOKEN}\r\nX-GitHub-Username: alice\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    await asyncio.wait_for(world.fake_github.arrived(held), SETTLE)
    writer.close()
    await writer.wait_closed()
    # The daemon has seen the connection go (and cancelled the handler) before GitHub answers.
    assert await eventually(lambda: connections(d) == before, SETTLE)
    assert await reader.read() == b""  # nothing was answered
    gate.set()


def outlived(log: str, method: str, path: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if line["event"] == "request outlived its client"
        and (line["method"], line["path"]) == (method, path)
    ]


async def test_a_registration_whose_client_left_is_completed(world: ApiWorld) -> None:
    with daemon_log() as log:
        # The client leaves while GitHub creates the repository's webhook: the registration is
        # stored by then, and its webhook, its hook id and its clone are still to come.
        body = {"owner": "octo-org", "name": "hello"}
        await send_then_leave(world, "POST", "/api/repositories", body, held="hooks")

        async def registered_whole() -> bool:
            shown = await world.alice.get(ONE)
            return (
                shown.status == 200
                and shown.body["status"] == "ready"
                and bool(shown.body["hook_id"])
            )

        assert await eventually(registered_whole, SETTLE)
        shown = (await world.alice.get(ONE)).body
        (hook,) = world.fake_github.hooks.values()
        assert (str(hook.id), hook.url) == (shown["hook_id"], shown["webhook_url"])

    (line,) = outlived(log.getvalue(), "POST", "/api/repositories")
    assert (line["status"], line["client_was"]) == (202, "disconnected")


async def test_a_secret_whose_client_left_is_stored(world: ApiWorld) -> None:
    await world.register_ready()
    assert world.daemon.client is not None
    # The caller's access is asked of GitHub again, and the client leaves while it is.
    world.daemon.client.app[GITHUB_ACCESS].forget(ALICE_TOKEN)
    path = f"{ONE}/secrets/DEPLOY_TOKEN"
    with daemon_log() as log:
        await send_then_leave(world, "PUT", path, {"value": SECRET_VALUE}, held="graphql")

        async def stored() -> bool:
            listed = await world.alice.get(f"{ONE}/secrets")
            return bool(listed.body["secrets"] == ["DEPLOY_TOKEN"])

        assert await eventually(stored, SETTLE)

    (line,) = outlived(log.getvalue(), "PUT", path)
    assert (line["status"], line["client_was"]) == (201, "disconnected")
    assert SECRET_VALUE not in log.getvalue()
