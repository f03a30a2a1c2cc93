"""Sending notifications (`[notifications]`, a project's `notify`): what the store queued as
builds ended, to each configured channel, by one node at a time (lease `notifications`).

A channel that has a notification is recorded at once and never sent it again; the others are
tried again with backoff (a receiver that is down delays nothing else: statuses have their own
reporter). A receiver that refuses it (4xx other than 408 and 429) is not asked again. Each
POST carries `X-Hobotnica-Delivery`, the same on every attempt, so a receiver can tell a retry
of one it has (after a crash between its answer and the record) from a new one.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from runner.core.background import BackgroundJobs
from runner.core.errors import StoreUnavailable
from runner.core.instance import Instance
from runner.core.links import build_url, on_github
from runner.core.models import Build
from runner.core.settings import NotificationSettings, Settings
from runner.reporting.notification_messages import (
    BuildNews,
    signature,
    slack_message,
    webhook_body,
)
from runner.store import NotificationItem, Store
from runner.store.announcements import Change, Committed
from runner.store.projects import ProjectDirectory

log = structlog.get_logger(logger_name="hobotnica.notify")

LEASE_NAME = "notifications"
LEASE_SECONDS = 30.0
POLL = 5.0
MAX_ATTEMPTS = 12  # about 3 hours of backoff, then it is given up (and logged)
# Two channels at most, well inside the lease (30 s), so no other node takes over mid-send.
SEND_TIMEOUT = aiohttp.ClientTimeout(total=8, connect=4)

LogTail = Callable[[int], Awaitable[str]]


def channels(settings: NotificationSettings) -> dict[str, tuple[str, str | None]]:
    """The configured channels: name → (URL, the webhook's secret)."""
    found: dict[str, tuple[str, str | None]] = {}
    if settings.slack_url:
        found["slack"] = (settings.slack_url, None)
    if settings.webhook_url:
        found["webhook"] = (settings.webhook_url, settings.webhook_secret)
    return found


def backoff(attempts: int) -> float:
    return float(min(3600, 5 * 2**attempts))


class Notifier:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        projects: ProjectDirectory,
        http: aiohttp.ClientSession,
        log_tail: LogTail,
        instance: Instance,
        jobs: BackgroundJobs,
    ) -> None:
        self._settings = settings
        self._store = store
        self._projects = projects
        self._http = http
        self._log_tail = log_tail
        self._owner = instance.owner
        self._is_gone = instance.is_gone
        self._jobs = jobs
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._store.announcements.subscribe(self._on_committed)
        self._jobs.keep_running("notifier", self._loop)

    def _on_committed(self, committed: Committed) -> None:
        if committed.change & Change.ENDED:
            self._wake.set()

    async def close(self) -> None:
        await self._jobs.close("notifier")
        with contextlib.suppress(Exception):
            await self._store.drop_lease(LEASE_NAME, self._owner)

    async def _loop(self) -> None:
        lease_renewed = 0.0
        while True:
            self._wake.clear()
            now = time.time()
            retry_at: float | None = None
            try:
                if now - lease_renewed > LEASE_SECONDS / 3:
                    held = await self._store.acquire_lease(
                        LEASE_NAME, self._owner, LEASE_SECONDS, self._is_gone
                    )
                    lease_renewed = now if held else 0.0
                if lease_renewed:
                    item, retry_at = await self._store.next_notification(now)
                    if item is not None:
                        await self.send(item)
                        continue
            except StoreUnavailable as error:
                log.warning("notifications wait for the store", error=str(error))
            wait = POLL if retry_at is None else min(POLL, max(0.0, retry_at - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def send(self, item: NotificationItem) -> None:
        """Send `item` to each configured channel that does not have it yet."""
        build = await self._store.get_build(item.build_id)
        project = None if build is None else await self._projects.resolve(build.repository)
        configured = self._settings.notifications.overridden(project.notify if project else {})
        waiting = {k: v for k, v in channels(configured).items() if k not in item.sent_to}
        if build is None or not waiting:
            await self._store.notification_settled(item.id, None)
            return
        news = await self._news(build, item.kind)
        again = []
        for name, (url, secret) in waiting.items():
            answer = await self._post(name, url, secret, news, item.id)
            if answer == "sent" or answer == "refused":
                await self._store.notification_sent(item.id, name)
            else:
                again.append(name)
        if again and item.attempts + 1 < MAX_ATTEMPTS:
            delay = backoff(item.attempts)
            log.info("notification will be retried", channels=again, in_s=delay)
            await self._store.notification_settled(item.id, time.time() + delay)
            return
        if again:
            log.error("notification given up", channels=again, attempts=item.attempts + 1)
        await self._store.notification_settled(item.id, None)

    async def _post(
        self, channel: str, url: str, secret: str | None, news: BuildNews, notification_id: int
    ) -> str:
        """ "sent", "refused" (never asked again) or "retry". The URL is never logged: it may
        carry the receiver's token."""
        payload: dict[str, Any] = (
            slack_message(news) if channel == "slack" else webhook_body(news, notification_id)
        )
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Hobotnica",
            "X-Hobotnica-Event": "notification",
            "X-Hobotnica-Delivery": f"{notification_id}-{channel}",
        }
        if secret:
            headers["X-Hobotnica-Signature-256"] = signature(secret, body)
        try:
            async with self._http.post(
                url, data=body, headers=headers, timeout=SEND_TIMEOUT, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("notification not sent", channel=channel, error=type(error).__name__)
            return "retry"
        if 200 <= status < 300:
            log.info("notification sent", channel=channel, kind=news.kind, build_id=news.build_id)
            return "sent"
        if status in (408, 429) or status >= 500:
            log.warning("notification not sent", channel=channel, status=status)
            return "retry"
        log.error("notification refused by its receiver", channel=channel, status=status)
        return "refused"

    async def _news(self, build: Build, kind: str) -> BuildNews:
        project = await self._projects.resolve(build.repository)
        mask = self._projects.masker(project).mask_text
        request = build.request
        duration = None
        if build.started_at is not None and build.finished_at is not None:
            duration = build.finished_at - build.started_at
        git_url = self._settings.github.git_url
        return BuildNews(
            kind=kind,
            build_id=build.id,
            build_url=build_url(self._settings.server.public_url, build.id),
            repository=build.repository,
            branch=mask(request.branch),
            job=build.job.value,
            sha=request.sha,
            commit_url=on_github(git_url, build.repository, f"commit/{request.sha}"),
            title=mask(request.message.strip().split("\n", 1)[0]),
            author=mask(request.author),
            state=build.state.value,
            description=mask(build.description),
            duration_s=None if duration is None else round(duration, 3),
            log_tail=await self._log_tail(build.id),
        )
