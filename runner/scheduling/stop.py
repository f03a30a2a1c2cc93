"""A request to stop a running build, and the reason its status will give."""

import asyncio


class StopRequest:
    """Asks a running build to stop, with the reason its status will give."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
