"""Each route family answers within its own time, and what it was doing is finished whole.

The daemon answers before nginx would (its `proxy_read_timeout`): a webhook past its time is
answered 503 with a body GitHub shows, an API call or a page past theirs 504; the live log
stream has no such limit. A handler is made slow the honest way: the store's one thread is
held by a transaction that waits for the test, so every store call queues behind it. The
seconds are shortened for the test; the same middlewares run.
"""

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runner.app import STORE
from runner.store.sqlite import SQLiteStore
from runner.web import middleware
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.logcapture import daemon_log
from tests.support.webhooks import push_payload
from tests.test_core_loop import wait_for_file
from tests.test_pages import events

# Short enough for a test; a store held by the test is far slower than that.
SHORT = 0.3
ANSWER_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def store_held(d: Daemon) -> AsyncIterator[None]:
    """The store's thread busy in a transaction until the block ends."""
    assert d.client is not None
    loop = asyncio.get_running_loop()
    holding, release = asyncio.Event(), threading.Event()

    def hold(_db: object) -> None:
        loop.call_soon_threadsafe(holding.set)
        release.wait(60)

    store = d.client.app[STORE]
    assert isinstance(store, SQLiteStore)  # the embedded store's one thread is what is held
    held = asyncio.create_task(store.run(hold, True))
    await holding.wait()
    try:
        yield
    finally:
        release.set()
        await held


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_webhook_past_its_time_is_answered_503_and_stored_whole(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(middleware, "WEBHOOK_SECONDS", SHORT)
    d = await daemon(make_settings())
    # Not the deploy branch: one build per delivery.
    sha = remote.commit({"Makefile": makefile(test="@echo fine")}, branch="feature")
    payload, delivery = push_payload("octo/app", sha, branch="feature"), str(uuid.uuid4())

    with daemon_log() as log:
        async with store_held(d):
            deliver = d.deliver("push", payload, delivery)
            status, answer = await asyncio.wait_for(deliver, ANSWER_TIMEOUT)
            assert status == 503
            assert "not answered within 0.3 s" in answer["error"]
            assert "redeliver" in answer["error"]
        # The store goes on: the delivery is stored with its build, which runs and reports.
        assert (await fake_github.wait_final(sha)).state == "success"
        status, answer = await d.deliver("push", payload, delivery)  # GitHub's redelivery
        assert (status, answer["duplicate"], answer["builds"]) == (200, True, [])
        assert d.client is not None
        assert (await d.client.get("/api/builds/2")).status == 404  # one delivery, one build

    lines = log_lines(log.getvalue())
    (late,) = [line for line in lines if line["event"] == "webhook not answered in time"]
    assert late["delivery_id"] == delivery
    first = next(line for line in lines if line["event"] == "delivery")
    assert (first["status"], first["outcome"], first["builds"]) == (202, "accepted", [1])
    (outlived,) = [line for line in lines if line["event"] == "request outlived its client"]
    assert (outlived["path"], outlived["status"]) == ("/webhooks/github", 202)
    assert outlived["client_was"] == "answered 503"


async def test_pages_and_the_api_answer_504_past_their_time_the_live_stream_goes_on(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(middleware, "PAGE_SECONDS", SHORT)
    monkeypatch.setattr(middleware, "API_SECONDS", SHORT)
    d = await daemon(make_settings())
    assert d.client is not None
    go = tmp_path / "go"
    sha = remote.commit({"Makefile": makefile(test=wait_for_file(go) + "\n\t@echo done")})
    status, answer = await d.deliver("push", push_payload("octo/app", sha))
    assert status == 202, answer
    (build_id,) = answer["builds"]
    await fake_github.wait_running(sha)

    async with d.client.get(f"/builds/{build_id}/events") as stream:
        assert stream.status == 200
        received = events(stream)
        assert (await anext(received))["event"] == "state"
        # Opened after the stream, these two are slow (the store is held) and cut off:
        async with store_held(d):
            page = await asyncio.wait_for(d.client.get(f"/builds/{build_id}"), ANSWER_TIMEOUT)
            assert page.status == 504
            assert "took too long" in await page.text()
            api = await asyncio.wait_for(d.client.get(f"/api/builds/{build_id}"), ANSWER_TIMEOUT)
            assert api.status == 504
            assert api.headers["Content-Type"] == "application/problem+json"
            assert (await api.json())["status"] == 504
        # The stream has outlived both, and follows the build to its end.
        go.touch()
        names = [event["event"] async for event in received]
        assert names[-1] == "end"
        assert (await d.client.get(f"/builds/{build_id}")).status == 200
