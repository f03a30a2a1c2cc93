"""One fake GitHub for all tests: an aiohttp server on loopback that records every status post.

It answers `POST /repos/{owner}/{repo}/statuses/{sha}` like GitHub (201 and the status back), and
can be told to answer the next posts with other codes. Tests wait on conditions over what it
recorded, with a deadline, instead of sleeping.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WAIT_TIMEOUT = 60.0


@dataclass
class StatusPost:
    repository: str
    sha: str
    state: str
    context: str
    description: str
    target_url: str
    authorization: str


@dataclass
class FakeGitHub:
    statuses: list[StatusPost] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", self._create_status)
        return app

    async def _create_status(self, request: web.Request) -> web.Response:
        if self.scripted:
            status, headers = self.scripted.pop(0)
            return web.json_response({"message": "scripted"}, status=status, headers=headers)
        body: dict[str, Any] = await request.json()
        post = StatusPost(
            repository=f"{request.match_info['owner']}/{request.match_info['repo']}",
            sha=request.match_info["sha"],
            state=body["state"],
            context=body["context"],
            description=body.get("description", ""),
            target_url=body.get("target_url", ""),
            authorization=request.headers.get("Authorization", ""),
        )
        async with self._changed:
            self.statuses.append(post)
            self._changed.notify_all()
        return web.json_response({"id": len(self.statuses), **body}, status=201)

    def for_commit(self, sha: str, context: str = "hobotnica/test") -> list[StatusPost]:
        return [s for s in self.statuses if s.sha == sha and s.context == context]

    def last_state(self, sha: str, context: str = "hobotnica/test") -> str | None:
        posts = self.for_commit(sha, context)
        return posts[-1].state if posts else None

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT
    ) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(condition)

    async def wait_running(
        self, sha: str, context: str = "hobotnica/test", timeout: float = WAIT_TIMEOUT
    ) -> None:
        """Until GitHub was told the build runs (a queued state may be collapsed away)."""
        await self.wait_until(
            lambda: any(s.description.startswith("Running") for s in self.for_commit(sha, context)),
            timeout,
        )

    async def wait_final(
        self, sha: str, context: str = "hobotnica/test", timeout: float = WAIT_TIMEOUT
    ) -> StatusPost:
        """The first final (non-pending) status posted for the commit and context."""
        await self.wait_until(
            lambda: any(s.state != "pending" for s in self.for_commit(sha, context)), timeout
        )
        return next(s for s in self.for_commit(sha, context) if s.state != "pending")
