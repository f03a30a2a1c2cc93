"""What operators and proxies ask the daemon: `/health` and `/metrics`, and the lifecycle that
`/health` reports (starting, ready, draining)."""

from dataclasses import dataclass

from aiohttp import web

from runner.core.metrics import CONTENT_TYPE, Metrics
from runner.scheduling.free_space import FreeSpace
from runner.store import Store
from runner.web.auth import Access


@dataclass
class Lifecycle:
    ready: bool = False
    draining: bool = False
    # Set by `serve` once the drain is over (or cut short): builds still running are interrupted.
    drain_done: bool = False


@dataclass
class Operations:
    lifecycle: Lifecycle
    store: Store
    free_space: FreeSpace
    metrics: Metrics
    access: Access

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),  # anonymous, for proxies and health checks
            web.get("/metrics", self.access.protect(self.scrape)),
        ]

    async def health(self, _request: web.Request) -> web.Response:
        """200 while this daemon takes webhooks; 503 when a proxy should send them elsewhere."""
        if self.lifecycle.draining:
            return web.json_response({"status": "draining"}, status=503)
        if not self.lifecycle.ready:
            return web.json_response({"status": "starting"}, status=503)
        if not self.store.writable:
            return web.json_response(
                {"status": "store unavailable", "reason": "the store cannot write (disk full?)"},
                status=503,
            )
        answer = {"status": "ok"}
        if reason := self.free_space.shortage():
            answer["builds"] = f"paused: {reason}"  # webhooks are still taken; builds wait
        return web.json_response(answer)

    async def scrape(self, _request: web.Request) -> web.Response:
        for state, count in (await self.store.state_counts()).items():
            self.metrics.queue.labels(state).set(count)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
