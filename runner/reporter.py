"""The status reporter: posts commit statuses from the store's outbox, one at a time.

A slow or failing GitHub never blocks a build or loses a result: builds only write to the outbox,
and this loop delivers, retrying network errors, 5xx and rate limits with backoff. A 4xx other
than a rate limit (say 422 for a bad sha, or 404 for a repository the token cannot see) is logged
and dropped, never retried forever. Without a GitHub token, and for local repositories, statuses
are written to the log instead.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
import gidgethub
import structlog
from gidgethub.aiohttp import GitHubAPI

from runner.build.environment import build_url
from runner.store import OutboxItem, Store

log = structlog.get_logger("hobotnica.statuses")

MAX_BACKOFF = 600.0
Outcome = Literal["sent", "rejected"] | float  # a float: retry after that many seconds


class GitHubStatuses:
    """Posts to `POST /repos/{owner}/{repo}/statuses/{sha}` through gidgethub."""

    def __init__(self, session: aiohttp.ClientSession, *, api_url: str, token: str) -> None:
        self._github = GitHubAPI(session, "hobotnica", oauth_token=token, base_url=api_url)

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        try:
            await self._github.post(f"/repos/{repository}/statuses/{sha}", data=payload)
        except gidgethub.RateLimitExceeded as error:
            return max(1.0, error.rate_limit.reset_datetime.timestamp() - time.time())
        except gidgethub.GitHubBroken as error:  # 5xx
            log.warning("GitHub answered a server error", status=error.status_code.value)
            return -1.0
        except gidgethub.BadRequest as error:
            if error.status_code.value in (403, 429):  # secondary rate limit
                return 60.0
            log.error(
                "GitHub refused a status; dropped",
                status=error.status_code.value,
                repository=repository,
                sha=sha,
                error=str(error)[:200],
            )
            return "rejected"
        except (aiohttp.ClientError, TimeoutError, gidgethub.HTTPException) as error:
            log.warning("posting a status failed", error=type(error).__name__)
            return -1.0
        return "sent"


class LoggedStatuses:
    """Stands in for GitHub when there is no token: the status goes to the log."""

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        log.info("status (not posted to GitHub)", repository=repository, sha=sha, **payload)
        return "sent"


class StatusReporter:
    def __init__(
        self,
        store: Store,
        github: GitHubStatuses | LoggedStatuses,
        *,
        public_url: str,
        is_local: Callable[[str], bool],
    ) -> None:
        self._store = store
        self._github = github
        self._local = LoggedStatuses()
        self._public_url = public_url
        self._is_local = is_local
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="status-reporter")

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                item, retry_at = await self._store.next_status(time.time())
                if item is not None:
                    await self._deliver(item)
                    continue
            except Exception:
                log.exception("status reporter failed; retrying")
                retry_at = time.time() + 5
            timeout = None if retry_at is None else max(0.0, retry_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, item: OutboxItem) -> None:
        payload = item.status.payload(
            context=item.context, target_url=build_url(self._public_url, item.build_id)
        )
        sink = self._local if self._is_local(item.repository) else self._github
        outcome = await sink.post(item.repository, item.sha, payload)
        if isinstance(outcome, str):
            await self._store.status_done(item.id, outcome)
            return
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _backoff(attempts: int) -> float:
    """Exponential backoff with full jitter: 1 s, 2 s, 4 s … up to 10 minutes."""
    return random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography * min(MAX_BACKOFF, 2.0**attempts)
