"""The real daemon and the fake GitHub on loopback, served from a thread with its own event loop.

For clients that are not asyncio (schemathesis sends its requests with `requests`): the test's
thread calls the daemon over HTTP on 127.0.0.1 while the daemon runs in `LiveDaemon`'s loop.
`run()` hands a coroutine to that loop (to read the fake GitHub's records, for example).
"""

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from runner.app import create_app
from runner.core.settings import Settings
from tests.support.fake_github import FakeGitHub

T = TypeVar("T")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 120.0


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveDaemon:
    """`make_settings(fake_github_url, public_url)` gives the daemon's settings."""

    def __init__(self, fake: FakeGitHub, make_settings: Callable[[str, str], Settings]) -> None:
        self.fake = fake
        self._make_settings = make_settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-daemon")
        self._runners: list[web.AppRunner] = []
        self._daemon_socket = _loopback_socket()
        self.url = f"http://127.0.0.1:{self._daemon_socket.getsockname()[1]}"
        self.settings: Settings | None = None

    def start(self) -> "LiveDaemon":
        self._thread.start()
        self.run(self._start(), START_TIMEOUT)
        return self

    def run(self, work: Coroutine[Any, Any, T], timeout: float = START_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    async def _start(self) -> None:
        fake_socket = _loopback_socket()
        self.fake.url = f"http://127.0.0.1:{fake_socket.getsockname()[1]}"
        await self._serve(self.fake.app(), fake_socket)
        self.settings = self._make_settings(self.fake.url, self.url)
        await self._serve(create_app(self.settings), self._daemon_socket)

    async def _serve(self, app: web.Application, sock: socket.socket) -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, sock).start()

    async def _stop(self) -> None:
        for runner in reversed(self._runners):  # the daemon first: it flushes statuses to GitHub
            await runner.cleanup()

    def stop(self) -> None:
        try:
            self.run(self._stop(), STOP_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
            self._loop.close()
