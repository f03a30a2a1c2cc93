"""A pushed commit is fetched into the mirror when the push is accepted, not when its build
starts: a build that waits in the queue finds its commit there already."""

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from runner.core.models import BuildRequest
from runner.executor.prefetch import Prefetcher
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import GIT_ENV, Remote, makefile, wait_for_file
from tests.support.webhooks import headers, push_payload

BOUND = 30.0


def mirror_has(mirror: Path, sha: str) -> bool:
    found = subprocess.run(
        ["git", f"--git-dir={mirror}", "cat-file", "-e", f"{sha}^{{commit}}"],
        env=GIT_ENV,
        capture_output=True,
    )
    return found.returncode == 0


async def test_a_queued_push_has_its_commit_fetched_before_its_build_starts(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    blocker = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="blocker")
    settings = make_settings()
    d = await daemon(settings)
    await d.deliver("push", push_payload("octo/app", blocker, branch="blocker"))
    await fake_github.wait_running(blocker)  # the repository's next build waits behind it
    mirror = settings.data_dir / "mirrors" / "octo" / "app.git"
    pushed = remote.commit({"Makefile": makefile(test="@echo built")}, branch="feature")
    assert not mirror_has(mirror, pushed)  # made after the blocker's fetch

    _, answer = await d.deliver("push", push_payload("octo/app", pushed, branch="feature"))

    deadline = time.monotonic() + BOUND
    while not mirror_has(mirror, pushed):
        assert time.monotonic() < deadline, "the pushed commit was never fetched"
        await asyncio.sleep(0.02)
    queued = await d.build(answer["builds"][0])
    assert (queued["state"], queued["started_at"]) == ("queued", None)
    release.touch()
    assert (await fake_github.wait_final(pushed)).state == "success"


async def test_the_fetch_starts_once_the_answer_is_on_the_wire(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Starting the fetch spawns git on the event loop; before the answer is written, GitHub
    would wait for that too. When the prefetcher hears of the push, the 202 is already in the
    client's socket (loopback delivers a write at once)."""
    answered_first: list[bool] = []
    client_socket: list[socket.socket] = []
    accepted = Prefetcher.accepted

    def peeking(self: Prefetcher, request: BuildRequest) -> None:
        try:
            waiting = client_socket[0].recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:  # nothing written to the client yet
            waiting = b""
        answered_first.append(waiting.startswith(b"HTTP/1.1 202"))
        accepted(self, request)

    monkeypatch.setattr(Prefetcher, "accepted", peeking)
    sha = remote.commit({"Makefile": makefile(test="@echo built")})
    d = await daemon(make_settings())
    assert d.client is not None
    body = json.dumps(push_payload("octo/app", sha)).encode()
    head = {**headers(body, SECRET), "Content-Length": str(len(body)), "Connection": "close"}
    request = "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in head.items()
    )
    connection = socket.create_connection(("127.0.0.1", d.client.server.port))
    client_socket.append(connection.dup())
    reader, writer = await asyncio.open_connection(sock=connection)
    writer.write(request.encode() + b"\r\n" + body)
    answer = await asyncio.wait_for(reader.read(), BOUND)
    writer.close()
    client_socket[0].close()

    assert answer.startswith(b"HTTP/1.1 202")
    assert answered_first == [True]
    assert (await fake_github.wait_final(sha)).state == "success"
