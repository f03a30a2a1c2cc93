"""One fake GitHub for all tests: an aiohttp server on loopback that records every status post.

It answers `POST /repos/{owner}/{repo}/statuses/{sha}` like GitHub (201 and the status back), and
can be told to answer the next posts with other codes. Tests wait on conditions over what it
recorded, with a deadline, instead of sleeping.
"""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
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
class HookDelivery:
    """One entry of a hook's delivery log, and what GitHub would send again."""

    id: int
    guid: str
    event: str
    status_code: int
    delivered_at: str
    body: bytes

    def listed(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at,
            "redelivery": False,
            "duration": 0.1,
            "status": "OK" if 200 <= self.status_code < 300 else "failed to connect",
            "status_code": self.status_code,
            "event": self.event,
            "action": None,
        }


@dataclass
class FakeGitHub:
    statuses: list[StatusPost] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    # The hook delivery log (newest first, as GitHub lists it) and the redeliveries asked for.
    deliveries: list[HookDelivery] = field(default_factory=list)
    redelivery_requests: list[int] = field(default_factory=list)
    redeliver: Callable[[HookDelivery], Awaitable[int]] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", self._create_status)
        hook = "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries"
        app.router.add_get(hook, self._list_deliveries)
        app.router.add_post(hook + "/{delivery_id}/attempts", self._redeliver)
        return app

    async def _list_deliveries(self, request: web.Request) -> web.Response:
        return web.json_response([d.listed() for d in self.deliveries])

    async def _redeliver(self, request: web.Request) -> web.Response:
        """Like GitHub: send the delivery again, same GUID, and log the new attempt."""
        original = next(
            d for d in self.deliveries if d.id == int(request.match_info["delivery_id"])
        )
        self.redelivery_requests.append(original.id)
        assert self.redeliver is not None
        status = await self.redeliver(original)
        self.deliveries.insert(
            0, dataclasses.replace(original, id=original.id + 1000, status_code=status)
        )
        return web.json_response({}, status=202)

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
