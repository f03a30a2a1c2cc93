"""The status client against a scripted GitHub on loopback, and its retry and pacing rules.

(aioresponses would be the usual mock, but its latest release cannot build responses for
aiohttp 3.14: pnuckowski/aioresponses#289. A scripted server is real HTTP and as quick.)
"""

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runner.core.background import BackgroundJobs
from runner.core.github_identity import DaemonToken
from runner.core.metrics import Metrics
from runner.reporting.outcomes import BAD_TOKEN_WAIT, SECONDARY_LIMIT_WAIT, Outcome, retry_delay
from runner.reporting.pace import SharedPace, TokenBucket
from runner.reporting.reporter import (
    GitHubStatuses,
    LoggedStatuses,
    StatusReporter,
    StatusRouter,
)
from runner.store import Store
from runner.store.sql import announce, outbox
from tests.support.stores import BACKENDS, OWNER, deliver, nobody_gone, request, sha

PAYLOAD = {"state": "success", "context": "hobotnica/test", "description": "ok", "target_url": "x"}
PostAnswered = Any


@pytest.fixture
def post_answered(aiohttp_server: Any) -> PostAnswered:
    async def post(status: int, headers: dict[str, str], body: object = None) -> object:
        seen: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(request.path)
            return web.json_response(body or {"message": "x"}, status=status, headers=headers)

        app = web.Application()
        app.router.add_post("/api/v3/repos/{owner}/{repo}/statuses/{sha}", handler)
        server = await aiohttp_server(app)
        api = str(server.make_url("/api/v3"))  # a GitHub Enterprise-style base URL
        async with aiohttp.ClientSession() as session:
            statuses = GitHubStatuses(session, api_url=api, identity=DaemonToken("t"))
            outcome = await statuses.post("octo/app", "a" * 40, PAYLOAD)
        assert seen == [f"/api/v3/repos/octo/app/statuses/{'a' * 40}"]
        return outcome

    return post


async def test_a_created_status_is_sent_to_the_enterprise_api_url(
    post_answered: PostAnswered,
) -> None:
    assert await post_answered(201, {}) == "sent"


@pytest.mark.parametrize("status", [404, 422])
async def test_a_refused_status_is_dropped_not_retried(
    status: int, post_answered: PostAnswered
) -> None:
    answer = {"message": "No commit found for SHA", "errors": "x"}
    assert await post_answered(status, {}, answer) == "rejected"


async def test_server_errors_back_off(post_answered: PostAnswered) -> None:
    assert await post_answered(502, {}) == -1.0


async def test_a_primary_rate_limit_waits_for_the_reset(post_answered: PostAnswered) -> None:
    reset = int(time.time()) + 30
    hdrs = {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-reset": str(reset),
    }
    delay = await post_answered(403, hdrs, {"message": "API rate limit exceeded"})
    assert isinstance(delay, float) and 28 <= delay <= 32


async def test_retry_after_is_honoured(post_answered: PostAnswered) -> None:
    hdrs = {"retry-after": "7"}
    assert await post_answered(429, hdrs) == 7.0


def test_retry_rules() -> None:
    now = 1000.0
    assert retry_delay(None, {}, now) == -1.0  # network error: back off
    assert retry_delay(503, {}, now) == -1.0
    assert retry_delay(403, {"retry-after": "12"}, now) == 12.0
    assert retry_delay(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1100"}, now) == 101
    message = "You have exceeded a secondary rate limit"
    assert retry_delay(403, {}, now, message) == SECONDARY_LIMIT_WAIT
    assert retry_delay(403, {}, now, "Resource not accessible by integration") is None
    assert retry_delay(422, {}, now) is None


def test_the_token_bucket_holds_its_rate_over_time() -> None:
    bucket = TokenBucket(burst=20, per_minute=60)
    waited = sum(bucket.take(1000.0) for _ in range(80))  # all asked for at once
    # 20 go at once; the other 60 are paid for by waiting, one second each at 60 a minute.
    assert waited == pytest.approx(sum(range(1, 61)))


def test_an_expired_token_pauses_instead_of_dropping() -> None:
    assert retry_delay(401, {}, 1000.0) == BAD_TOKEN_WAIT


def test_the_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(burst=3, per_minute=60)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(1.0)
    assert bucket.take(102.0) == 0.0  # refilled


@pytest.mark.parametrize("backend_name", sorted(BACKENDS))
async def test_a_daemon_taking_over_the_outbox_goes_on_at_the_pace_left_behind(
    backend_name: str, tmp_path: Path
) -> None:
    # Node A posted a burst and died; node B takes the outbox over at once. A fresh bucket would
    # let B post another burst of 20 and trip GitHub's secondary limit; B waits instead.
    async with BACKENDS[backend_name](tmp_path) as backend:
        node_a = SharedPace(await backend.open(), per_minute=60, burst=20)
        await node_a.resume()
        assert [await node_a.take(1000.0) for _ in range(20)] == [0.0] * 20
        node_b = SharedPace(await backend.open(), per_minute=60, burst=20)
        await node_b.resume()
        assert await node_b.take(1000.0) == pytest.approx(1.0)
        assert await node_b.take(1030.0) == 0.0  # half a minute later the bucket has refilled


async def test_only_statuses_that_go_to_github_are_paced() -> None:
    # Without a token the config's statuses are log lines: pacing them would only delay them.
    async def no_token(_repository: str) -> str | None:
        return None

    async with aiohttp.ClientSession() as session:
        router = StatusRouter(
            LoggedStatuses(),
            session=session,
            api_url="http://127.0.0.1:9",
            is_configured=lambda repository: repository == "octo/app",
            registered_token=no_token,
            on_token_rejected=lambda _repository: None,
        )
        assert not router.posts_to_github("octo/app")
        assert router.posts_to_github("octo-org/registered")


class _RecordingGitHub:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def post(self, repository: str, sha: str, payload: dict[str, Any]) -> Outcome:
        self.posted.append((sha, payload["description"]))
        self.changed.set()
        return "sent"

    async def posted_at_least(self, count: int) -> None:
        while len(self.posted) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


def _reporter(store: Store, github: _RecordingGitHub, jobs: BackgroundJobs) -> StatusReporter:
    return StatusReporter(
        store,
        github,  # type: ignore[arg-type]
        public_url="http://127.0.0.1:1",
        is_local=lambda _repository: False,
        owner=OWNER,
        is_gone=nobody_gone,
        metrics=Metrics(),
        jobs=jobs,
        per_minute=6000,
    )


def _hold_pending_states(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(outbox, "PENDING_HOLD", seconds)
    monkeypatch.setattr(announce, "PENDING_HOLD", seconds)


async def test_a_held_pending_state_does_not_wake_the_reporter_before_it_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new build's `Queued` is held; looking at the outbox as it arrives would only compete
    # with claiming that build. The reporter looks once, when the state is due, and posts it.
    _hold_pending_states(monkeypatch, 0.5)
    async with BACKENDS["sqlite"](tmp_path) as backend:
        store = await backend.open()
        github, jobs = _RecordingGitHub(), BackgroundJobs()
        reporter = _reporter(store, github, jobs)
        looked = 0
        next_status = store.next_status

        async def counted(now: float) -> Any:
            nonlocal looked
            looked += 1
            return await next_status(now)

        store.next_status = counted  # type: ignore[method-assign]
        reporter.start()
        await asyncio.wait_for(_until(lambda: looked == 1), 10)  # the first look, at start
        await deliver(store, "d-1", request(1))
        await github.posted_at_least(1)
        assert github.posted == [(sha(1), "Queued")]
        assert looked == 2
        await jobs.close()


async def test_a_status_committed_while_the_reporter_looks_is_posted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reporter read the outbox; before it goes to sleep, a status due now is committed and
    # announced. It must look again, not sleep on what it read (a status left unsent).
    _hold_pending_states(monkeypatch, 0.0)
    async with BACKENDS["sqlite"](tmp_path) as backend:
        store = await backend.open()
        github, jobs = _RecordingGitHub(), BackgroundJobs()
        reporter = _reporter(store, github, jobs)
        next_status = store.next_status
        looks = 0

        async def racing(now: float) -> Any:
            nonlocal looks
            looks += 1
            found = await next_status(now)
            if looks == 3:  # found nothing: meanwhile, another delivery commits
                assert found[0] is None
                await deliver(store, "d-2", request(2, branch="other"))
            return found

        store.next_status = racing  # type: ignore[method-assign]
        reporter.start()
        await asyncio.wait_for(_until(lambda: looks == 1), 10)  # nothing yet: it sleeps
        await deliver(store, "d-1", request(1))  # look 2 posts it; look 3 finds nothing
        await github.posted_at_least(2)
        assert github.posted == [(sha(1), "Queued"), (sha(2), "Queued")]
        await jobs.close()


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)
