"""A TCP proxy on loopback whose link can be split: connections stay open but no byte crosses,
as when a network partition leaves a node cut off from its database (nothing is refused, every
request just hangs)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SplittableProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._linked = asyncio.Event()
        self._linked.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def split(self) -> None:
        self._linked.clear()

    def heal(self) -> None:
        self._linked.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        this = asyncio.current_task()
        if this is not None:  # closing the proxy cancels a connection still waiting for the link
            self._tasks.add(this)
            this.add_done_callback(self._tasks.discard)
        try:
            await self._linked.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except (asyncio.CancelledError, OSError):  # the proxy closed while the link was split
            writer.close()
            return
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._linked.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()


@contextlib.asynccontextmanager
async def splittable_proxy(target_port: int) -> AsyncIterator[SplittableProxy]:
    proxy = SplittableProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
