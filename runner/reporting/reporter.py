"""The status reporter: posts commit statuses from the store's outbox, one at a time.

A slow or failing GitHub never blocks a build or loses a result: builds only write to the outbox,
and this loop delivers it, surviving restarts because the outbox is in the store.

- Serial, as GitHub asks of mutating requests: one post at a time, and across daemons sharing
  the store only the holder of the `outbox` lease posts.
- Paced (`runner.reporting.pace`): a token bucket, kept in the store, keeps bursts under
  GitHub's secondary limit (about 80 content-creating requests a minute); the outbox sends the
  newest builds' statuses first.
- Retried (`retry_delay`): network errors and 5xx with exponential backoff and jitter; 403/429
  honour `retry-after`, or wait for `x-ratelimit-reset` when `x-ratelimit-remaining` is 0; a 401
  (token expired or revoked) pauses posting for 5 minutes at a time, losing nothing. Any other
  4xx (422 for an unknown sha, 404 for a repository the token cannot see) is logged and dropped,
  never retried forever.
- Without a GitHub token, and for local repositories, statuses are written to the log instead.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import gidgethub
import structlog
from gidgethub.aiohttp import GitHubAPI

from runner.core.background import BackgroundJobs
from runner.core.errors import StoreUnavailable
from runner.core.github_identity import DaemonToken, GitHubIdentity
from runner.core.links import build_url
from runner.core.metrics import Metrics
from runner.reporting.checks import CheckRuns
from runner.reporting.outcomes import (
    Outcome,
    post_as,
)
from runner.reporting.pace import PER_MINUTE, SharedPace
from runner.store import OutboxItem, Store
from runner.store.announcements import Change, Committed

log = structlog.get_logger(logger_name="hobotnica.statuses")

MAX_BACKOFF = 600.0
LEASE_NAME = "outbox"
PAUSE_NAME = "github-rate-limit"  # in the store: every daemon honours a rate limit's wait
LEASE_SECONDS = 30.0


class GitHubStatuses:
    """Posts to `POST /repos/{owner}/{repo}/statuses/{sha}` through gidgethub, with the token
    `identity` gives for the repository (the daemon's, or a GitHub App's installation token).

    A 401 for a token the identity can replace (an installation token that expired or was
    revoked) is answered by posting again at once with a new one: the status is not lost.
    `on_token_rejected`: the token is a registered repository's own, and a 401 means its access
    is to be re-checked (the status is dropped) rather than a pause for every repository.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        identity: GitHubIdentity,
        on_token_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self._session = session
        self._api_url = api_url
        self._identity = identity
        self._on_token_rejected = on_token_rejected

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        async def send(token: str) -> Exception | None:
            return await self._send(token, repository, sha, payload)

        return await post_as(self._identity, repository, sha, send, log, self._on_token_rejected)

    async def _send(
        self, token: str, repository: str, sha: str, payload: dict[str, Any]
    ) -> Exception | None:
        """Post once; the error, or None when GitHub took the status."""
        github = GitHubAPI(self._session, "hobotnica", oauth_token=token, base_url=self._api_url)
        try:
            await github.post(f"/repos/{repository}/statuses/{sha}", data=payload)
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, ValueError) as error:
            # ValueError: an answer gidgethub cannot read (a proxy's odd status, bad JSON).
            return error
        return None


class StatusRouter:
    """Each status with the right credential.

    The config's projects use the default (the daemon's token, or the log when it has none). An
    API-registered repository uses its registrant's token, and nothing else: for a while after
    its removal the store still gives it (so the final states of the builds the removal stopped
    reach GitHub, whichever daemon posts them); after that, or when its access is gone, its
    statuses are dropped rather than posted with the operator's token.
    """

    def __init__(
        self,
        default: "GitHubStatuses | LoggedStatuses",
        *,
        session: aiohttp.ClientSession,
        api_url: str,
        is_configured: Callable[[str], bool],
        registered_token: Callable[[str], Awaitable[str | None]],
        on_token_rejected: Callable[[str], None],
        installed: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.default = default
        self._installed = installed
        self._session = session
        self._api_url = api_url
        self._is_configured = is_configured
        self._registered_token = registered_token
        self._on_token_rejected = on_token_rejected

    def posts_to_github(self, repository: str) -> bool:
        """A registration's statuses always go to GitHub; the config's, when there is a token."""
        return not self._is_configured(repository) or isinstance(self.default, GitHubStatuses)

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        if self._is_configured(repository):
            return await self.default.post(repository, sha, payload)
        token = await self._registered_token(repository)
        if token is None and self._installed is not None and await self._installed(repository):
            return await self.default.post(repository, sha, payload)  # the App's installation
        if token is None:
            log.info(
                "status not posted: the repository is no longer registered with a token",
                repository=repository,
                sha=sha,
            )
            return "rejected"
        poster = GitHubStatuses(
            self._session,
            api_url=self._api_url,
            identity=DaemonToken(token),
            on_token_rejected=self._on_token_rejected,
        )
        return await poster.post(repository, sha, payload)


class LoggedStatuses:
    """Stands in for GitHub when there is no token: the status goes to the log."""

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        log.info("status (not posted to GitHub)", repository=repository, sha=sha, **payload)
        return "sent"


def daemon_statuses(
    http: aiohttp.ClientSession, api_url: str, identity: GitHubIdentity | None
) -> "GitHubStatuses | LoggedStatuses":
    """Who posts the config's projects' statuses: the daemon's identity, or the log without one."""
    if identity is not None:
        return GitHubStatuses(http, api_url=api_url, identity=identity)
    log.warning(
        "no GitHub token or App configured: commit statuses of the config's projects are "
        "written to this log, not posted (set github.token, or github.app_id and "
        "github.private_key_file)"
    )
    return LoggedStatuses()


class StatusReporter:
    def __init__(
        self,
        store: Store,
        github: "GitHubStatuses | LoggedStatuses | StatusRouter",
        *,
        public_url: str,
        is_local: Callable[[str], bool],
        owner: str,
        is_gone: Callable[[str | None], bool],
        metrics: Metrics,
        jobs: BackgroundJobs,
        per_minute: float = PER_MINUTE,
        checks: CheckRuns | None = None,
    ) -> None:
        self._checks = checks
        self._store = store
        self._github = github
        self._local = LoggedStatuses()
        self._public_url = public_url
        self._is_local = is_local
        self._owner = owner
        self._is_gone = is_gone
        self._metrics = metrics
        self._pace = SharedPace(store, per_minute=per_minute)
        self._wake = asyncio.Event()
        # While idle: when it looks at the outbox next (None: when woken). While it looks: None
        # and `_looking`; whatever is announced meanwhile makes it look once more.
        self._sleep_until: float | None = None
        self._looking = False
        self._alarm: asyncio.TimerHandle | None = None
        self._jobs = jobs

    def start(self) -> None:
        self._store.announcements.subscribe(self._on_committed)
        self._jobs.keep_running("status-reporter", self._loop)

    def _on_committed(self, committed: Committed) -> None:
        if committed.change & Change.OUTBOX:
            self.wake_at(committed.outbox_due_at)

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, when: float) -> None:
        """Look at the outbox again by `when` (a held pending state becomes due then).

        A state due later does not wake it now: looking costs store operations that would
        compete with claiming the build that just arrived.
        """
        if self._looking:
            self._wake.set()  # it may have read the outbox before this change: look again
            return
        if self._sleep_until is not None and when >= self._sleep_until:
            return  # it looks by then anyway
        delay = when - time.time()
        if delay <= 0:
            self._wake.set()
            return
        self._sleep_until = when
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _loop(self) -> None:
        lease_renewed = 0.0
        while True:
            self._wake.clear()
            self._looking = True
            retry_at: float | None = None
            try:
                now = time.time()
                if now - lease_renewed > LEASE_SECONDS / 3:
                    if not await self._store.acquire_lease(
                        LEASE_NAME, self._owner, LEASE_SECONDS, self._is_gone
                    ):
                        lease_renewed = 0.0
                        retry_at = now + LEASE_SECONDS / 3  # another daemon posts meanwhile
                        raise _Waiting
                    if not lease_renewed:  # taking over: go on at the pace left behind
                        await self._pace.resume()
                    lease_renewed = now
                paused_until = await self._store.paused_until(PAUSE_NAME)
                if paused_until > now:
                    retry_at = paused_until
                    raise _Waiting
                item, retry_at = await self._store.next_status(now)
                if item is not None:
                    await self._deliver(item)
                    continue
            except _Waiting:
                pass
            except StoreUnavailable as error:  # a full disk: /health says so; try again soon
                log.warning("status reporter waits for the store", error=str(error))
                retry_at = time.time() + 5
            self._sleep_until = retry_at
            self._looking = False
            timeout = None if retry_at is None else max(0.0, retry_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None

    async def _deliver(self, item: OutboxItem) -> None:
        payload = item.status.payload(
            context=item.context, target_url=build_url(self._public_url, item.build_id)
        )
        local = self._is_local(item.repository)
        checks = None if local or self._checks is None else self._checks
        as_check = checks is not None and await checks.covers(item.repository)
        posts_to_github = not local and (
            as_check or _posts_to_github(self._github, item.repository)
        )
        if posts_to_github and (wait := await self._pace.take(time.time())):
            await asyncio.sleep(wait)
        if checks is not None and as_check:
            outcome = await checks.post(item)
        else:
            poster = self._local if local else self._github
            outcome = await poster.post(item.repository, item.sha, payload)
        if isinstance(outcome, str):
            self._metrics.status_posts.labels(outcome).inc()
            await self._store.status_done(item.id, outcome)
            return
        self._metrics.status_posts.labels("rate_limited" if outcome >= 0 else "retried").inc()
        if outcome >= 0:
            self._metrics.rate_limit_wait.inc(outcome)
            # A rate limit holds for every request, not just this one: nothing is posted
            # until it has passed (GitHub: "do not retry until after retry-after / the reset").
            log.warning("GitHub rate limit: posting paused", for_s=round(outcome, 1))
            await self._store.pause(PAUSE_NAME, time.time() + outcome)
        delay = outcome if outcome >= 0 else _backoff(item.attempts)
        log.info("status post will be retried", in_s=round(delay, 1), attempts=item.attempts + 1)
        await self._store.status_retry(item.id, time.time() + delay)

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty, up to `timeout`; True if it emptied."""
        deadline = time.monotonic() + timeout
        while await self._store.pending_status_count():
            if time.monotonic() >= deadline:
                return False
            self.wake()
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        await self._jobs.close("status-reporter")
        with contextlib.suppress(Exception):
            await self._store.drop_lease(LEASE_NAME, self._owner)


def _posts_to_github(
    poster: "GitHubStatuses | LoggedStatuses | StatusRouter", repository: str
) -> bool:
    """Whether `repository`'s status is a GitHub request (paced), not a log line."""
    if isinstance(poster, StatusRouter):
        return poster.posts_to_github(repository)
    return isinstance(poster, GitHubStatuses)


class _Waiting(Exception):
    """Another daemon holds the outbox lease, or GitHub asked us to wait."""


def _backoff(attempts: int) -> float:
    """Exponential backoff with full jitter: about 1 s, 2 s, 4 s … up to 10 minutes."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF, 2.0**attempts)  # noqa: S311 - jitter
