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
from urllib.parse import unquote, urlsplit

import aiohttp
import aiosmtplib
import structlog

from runner.core.background import BackgroundJobs
from runner.core.errors import StoreUnavailable
from runner.core.instance import Instance
from runner.core.links import build_url, on_github
from runner.core.masking import SecretMasker
from runner.core.models import Build
from runner.core.notification_settings import NotificationSettings
from runner.core.settings import Settings
from runner.reporting.notification_messages import (
    BuildNews,
    email_message,
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
MAX_ATTEMPTS = 12  # about 2½ hours of backoff, then it is given up (and logged)
# Two channels at most, well inside the lease (30 s), so no other node takes over mid-send.
SEND_TIMEOUT = aiohttp.ClientTimeout(total=8, connect=4)

# The end of a build's log, masked with the masker given, without terminal escapes.
LogTail = Callable[[int, SecretMasker], Awaitable[str]]


def channels(settings: NotificationSettings) -> list[str]:
    """The channels `settings` configure, by name."""
    found = []
    if settings.slack_url:
        found.append("slack")
    if settings.webhook_url:
        found.append("webhook")
    if settings.email_to and settings.smtp_url:
        found.append("email")
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
            _unless_cancelled(None)  # a cancel a client library swallowed still ends the loop
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
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def send(self, item: NotificationItem) -> None:
        """Send `item` to each configured channel that does not have it yet."""
        build = await self._store.get_build(item.build_id)
        project = None if build is None else await self._projects.resolve(build.repository)
        defaults = self._settings.notifications
        configured = defaults.overridden(project.notify) if project else defaults
        waiting = [name for name in channels(configured) if name not in item.sent_to]
        if build is None or not waiting:
            await self._store.notification_settled(item.id, None)
            return
        news = await self._news(build, item.kind, self._projects.masker(project))
        again = []
        for name in waiting:
            delivery = f"{item.id}-{name}"
            if name == "email":
                answer = await self._mail(configured, news, delivery)
            else:
                answer = await self._post(name, configured, news, item.id, delivery)
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
        self,
        channel: str,
        configured: NotificationSettings,
        news: BuildNews,
        notification_id: int,
        delivery: str,
    ) -> str:
        """ "sent", "refused" (never asked again) or "retry". The URL is never logged: it may
        carry the receiver's token."""
        if channel == "slack":
            url, secret, payload = configured.slack_url, None, slack_message(news)
        else:
            url, secret = configured.webhook_url, configured.webhook_secret
            payload = webhook_body(news, notification_id)
        assert url is not None
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Hobotnica",
            "X-Hobotnica-Event": "notification",
            "X-Hobotnica-Delivery": delivery,
        }
        if secret:
            headers["X-Hobotnica-Signature-256"] = signature(secret, body)
        try:
            async with self._http.post(
                url, data=body, headers=headers, timeout=SEND_TIMEOUT, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            _unless_cancelled(error)
            log.warning("notification not sent", channel=channel, error=type(error).__name__)
            return "retry"
        return _answer(channel, news, status)

    async def _mail(self, configured: NotificationSettings, news: BuildNews, delivery: str) -> str:
        """By SMTP: STARTTLS when the server offers it (`smtp://`), TLS from the start
        (`smtps://`); a 4xx answer or a lost connection is tried again, a 5xx is not."""
        assert configured.smtp_url is not None
        server = urlsplit(configured.smtp_url)
        sender = configured.email_from or f"hobotnica@{self._mail_domain}"
        message = email_message(news, sender, configured.email_to, delivery)
        try:
            await aiosmtplib.send(
                message,
                hostname=server.hostname,
                port=server.port,
                username=unquote(server.username) if server.username else None,
                password=unquote(server.password) if server.password else None,
                use_tls=server.scheme == "smtps",
                start_tls=None if server.scheme == "smtp" else False,
                timeout=SEND_TIMEOUT.total,
            )
        except aiosmtplib.SMTPResponseException as error:
            _unless_cancelled(error)
            return _answer("email", news, error.code, smtp=True)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            _unless_cancelled(error)
            log.warning("notification not sent", channel="email", error=type(error).__name__)
            return "retry"
        return _answer("email", news, 250, smtp=True)

    @property
    def _mail_domain(self) -> str:
        return urlsplit(self._settings.server.public_url).hostname or "localhost"

    async def _news(self, build: Build, kind: str, masker: SecretMasker) -> BuildNews:
        mask = masker.mask_text
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
            log_tail=await self._log_tail(build.id, masker),
        )


def _unless_cancelled(error: BaseException | None) -> None:
    """A client library may turn the cancel of a send (the daemon stopping) into an error of its
    own, or into nothing; the cancel goes on, or closing would wait for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error


def _answer(channel: str, news: BuildNews, status: int, *, smtp: bool = False) -> str:
    """What a receiver's answer means: an HTTP status, or an SMTP reply code."""
    if (200 <= status < 300) if not smtp else (200 <= status < 400):
        log.info("notification sent", channel=channel, kind=news.kind, build_id=news.build_id)
        return "sent"
    transient = (400 <= status < 500) if smtp else (status in (408, 429) or status >= 500)
    if transient:
        log.warning("notification not sent", channel=channel, status=status)
        return "retry"
    log.error("notification refused by its receiver", channel=channel, status=status)
    return "refused"
