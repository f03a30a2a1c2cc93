"""The build page, live: `GET /builds/{id}/events`, server-sent events from the log on disk.

The stream sends what the page lacks, then follows the build until its final state:

- `lines` (with `id: OFFSET.LINE`): rendered log lines (`runner.web.logview`) from the byte
  offset the page had; a reconnecting browser sends the last id back (`Last-Event-ID`) and goes
  on from there, so nothing is sent twice or lost across a reconnect or a blue/green switch;
- `state`: the build's state, description and times whenever they change;
- `capped`: the output went over the cap, so the tail only appears when the build ends;
- `reset`: the log started over (the build runs again after a daemon was lost);
- `end`: the final state, once the whole log was sent; the page closes the stream.

States come from `BuildWatch`: one store read a second for all open streams together (and at
once when a build of this daemon starts or ends), not one per stream; a build running in the
other blue/green instance is seen the same way. The log is read from the file, which both
instances share. The worker closes a build's log before it records the final state, so a final
state seen before reading the file to its end means the log is complete.

Streams are bounded: at most `MAX_STREAMS` at once (503 beyond, and the page says so), each
for at most `STREAM_SECONDS` (the browser reconnects and resumes, which also re-checks the
sign-in), and all end when the daemon shuts down. The protocol is aiohttp-sse's
`EventSourceResponse`: events written whole, a ping comment every `KEEPALIVE_SECONDS` that
keeps proxies from timing the stream out (nginx: `proxy_buffering off` for `/builds/`), and a
reader that stops reading is cut off after its send timeout instead of holding a stream.
The event ids, and resuming from them, are this module's own.
"""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from runner.core.background import BackgroundJobs
from runner.core.links import ring_path
from runner.core.models import Build
from runner.store import Store
from runner.store.announcements import Change, Committed
from runner.web.catalog import RepositoryCatalog
from runner.web.log_files import LogFiles
from runner.web.logview import LineRenderer, line_number_at
from runner.web.present import BuildView

log = structlog.get_logger(logger_name="hobotnica.live")

MAX_STREAMS = 64
STREAM_SECONDS = 600.0
KEEPALIVE_SECONDS = 15.0
FILE_POLL_SECONDS = 0.25
STATE_POLL_SECONDS = 1.0
READ_BYTES = 256 * 1024
RETRY_MILLISECONDS = 2000


@dataclass
class Watched:
    build: Build
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    gone: bool = False


class BuildWatch:
    """The builds open streams follow, their states read together; owned, with `close`."""

    def __init__(
        self, store: Store, jobs: BackgroundJobs, interval: float = STATE_POLL_SECONDS
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._interval = interval
        self._watched: dict[int, list[Watched]] = {}
        self._wake = asyncio.Event()
        self.closing = False

    def start(self) -> None:
        self._store.announcements.subscribe(self._on_committed)
        self._jobs.keep_running("build-watch", self._poll)

    def _on_committed(self, committed: Committed) -> None:
        """A build started or ended: read the states now, not at the next tick. A log grew
        (shipped by another node): every open stream looks."""
        if committed.change & (Change.QUEUED | Change.STARTED | Change.ENDED):
            self._wake.set()
        if committed.change & Change.LOG:
            for watchers in self._watched.values():
                for watched in watchers:
                    watched.changed.set()

    @contextlib.asynccontextmanager
    async def watching(self, build: Build) -> AsyncIterator[Watched]:
        watched = Watched(build)
        self._watched.setdefault(build.id, []).append(watched)
        try:
            yield watched
        finally:
            watchers = self._watched.get(build.id, [])
            if watched in watchers:
                watchers.remove(watched)
            if not watchers:
                self._watched.pop(build.id, None)

    def end_streams(self) -> None:
        """Shutdown: every open stream ends (browsers reconnect, to the next instance)."""
        self.closing = True
        for watchers in self._watched.values():
            for watched in watchers:
                watched.changed.set()

    async def close(self) -> None:
        self.end_streams()
        await self._jobs.close("build-watch")

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if not self._watched:
                continue
            builds = await self._store.get_builds(list(self._watched))
            for build_id, watchers in list(self._watched.items()):
                current = builds.get(build_id)
                for watched in watchers:
                    if current is None:
                        watched.gone = True
                        watched.changed.set()
                    elif current != watched.build:
                        watched.build = current
                        watched.changed.set()


class LiveLog:
    def __init__(
        self, logs: LogFiles, store: Store, watch: BuildWatch, catalog: RepositoryCatalog
    ) -> None:
        self._logs = logs
        self._store = store
        self._watch = watch
        self._catalog = catalog
        self._open = 0

    async def stream(self, request: web.Request) -> web.StreamResponse:
        build = await self._store.get_build(int(request.match_info["id"]))
        if build is None:
            raise web.HTTPNotFound(text="no such build\n")
        if self._open >= MAX_STREAMS or self._watch.closing:
            raise web.HTTPServiceUnavailable(
                text="too many live pages open; reload later\n", headers={"Retry-After": "10"}
            )
        self._open += 1
        try:
            async with self._watch.watching(build) as watched:
                return await self._follow(request, watched)
        finally:
            self._open -= 1

    async def _follow(self, request: web.Request, watched: Watched) -> web.StreamResponse:
        path = await self._logs.path(watched.build.id)
        masker = await self._catalog.masker(watched.build.repository)
        offset, line = await _resume_point(request, path)
        response = EventSourceResponse(
            sep="\n", ping_interval=KEEPALIVE_SECONDS, headers={"X-Content-Type-Options": "nosniff"}
        )
        response.headers["Cache-Control"] = "no-cache, no-store"
        await response.prepare(request)
        renderer = LineRenderer(masker, line)
        sent_state: Build | None = None
        capped_said = False
        deadline = time.monotonic() + STREAM_SECONDS
        try:
            async with response:
                await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
                if offset < 0:  # the page's log is not this file's any more
                    offset, renderer = 0, LineRenderer(masker, 1)
                    await _send(response, "reset", {})
                while not self._watch.closing and not watched.gone:
                    build = watched.build  # the state first, then the file: see the module doc
                    watched.changed.clear()
                    if build != sent_state and not build.state.is_final:  # `end` has the last
                        await _send(response, "state", BuildView.of(build, masker).live_state())
                    sent_state = build
                    path = await self._logs.path(build.id)
                    size = _size(path)
                    if size < offset:
                        offset, renderer = 0, LineRenderer(masker, 1)
                        await _send(response, "reset", {})
                    if size > offset:
                        final = build.state.is_final
                        html, used = await asyncio.to_thread(
                            _read_and_render, path, offset, renderer, final
                        )
                        if used:
                            offset += used
                            await _send(
                                response,
                                "lines",
                                {"html": html},
                                f"{offset}.{renderer.next_line}",
                            )
                            continue
                    if build.state.is_final and size <= offset:
                        await _send(response, "end", BuildView.of(build, masker).live_state())
                        break
                    if not capped_said and ring_path(path).exists():
                        capped_said = True
                        await _send(response, "capped", {})
                    if time.monotonic() >= deadline:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watched.changed.wait(), FILE_POLL_SECONDS)
        except (ConnectionResetError, TimeoutError):  # the page was closed, or stopped reading
            pass
        return response


async def _resume_point(request: web.Request, path: Path) -> tuple[int, int]:
    """Where to start: `Last-Event-ID` (a reconnect), else the page's `offset`, as (offset,
    line number); offset -1 when the log is now shorter than that (it started over)."""
    mark = request.headers.get("Last-Event-ID") or request.query.get("from", "")
    offset_text, _, line_text = mark.partition(".")
    if not offset_text.isdigit() or len(offset_text) > 15:
        return 0, 1
    offset = int(offset_text)
    if line_text.isdigit() and len(line_text) <= 12:
        line = int(line_text)
        return (offset, line) if _size(path) >= offset else (-1, 1)
    counted = await asyncio.to_thread(line_number_at, path, offset)
    return (-1, 1) if counted is None else (offset, counted)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read_and_render(
    path: Path, offset: int, renderer: LineRenderer, final: bool
) -> tuple[str, int]:
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read(READ_BYTES)
        at_end = not file.read(1)
    return renderer.render(data, final=final and at_end)


async def _send(
    response: EventSourceResponse, name: str, data: object, event_id: str | None = None
) -> None:
    await response.send(orjson.dumps(data).decode(), id=event_id, event=name)
