"""What GitHub's answer to a status or check-run post means for the outbox: sent, rejected for
good, or to be retried after a delay (rate limits, outages, a token that expired).

https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
"""

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import gidgethub

from runner.core.github_identity import GitHubIdentity, GitHubUnreachable

SECONDARY_LIMIT_WAIT = 60.0
BAD_TOKEN_WAIT = 300.0  # GitHub: wait at least a minute when no header says how long

Sent = Literal["sent", "rejected"]
Outcome = Sent | float  # a float: retry after that many seconds (negative: back off)


def retry_delay(
    status: int | None, headers: Mapping[str, str], now: float, message: str = ""
) -> float | None:
    """How long to wait before posting again after an answer, or None to drop the status.

    `status` None is a network error; `headers` have lower-case names. A negative answer means
    "no hint: back off exponentially".
    """
    if status is None or status >= 500:
        return -1.0
    if status == 401:  # the token expired or was revoked: wait for a person to fix it
        return BAD_TOKEN_WAIT
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(1.0, float(reset) - now + 1)
    if status == 429 or "rate limit" in message.lower():
        return SECONDARY_LIMIT_WAIT
    return None  # a 403 that is not a rate limit: the token may not do this


def outcome_of(
    failure: Exception | None,
    repository: str,
    sha: str,
    log: Any,
    on_token_rejected: Callable[[str], None] | None = None,
) -> Outcome:
    """The outbox's outcome for a post that ended with `failure` (None: GitHub took it).

    `on_token_rejected`: the token is a registered repository's own, and a 401 means its access
    is to be re-checked (the status is dropped) rather than a pause for every repository.
    """
    if failure is None:
        return "sent"
    if not isinstance(failure, gidgethub.HTTPException):
        # aiohttp.ClientError, TimeoutError, or a ValueError: an answer gidgethub cannot read
        log.warning("posting to GitHub failed", error=type(failure).__name__)
        return -1.0
    status = failure.status_code.value
    if status == 401 and on_token_rejected is not None:
        log.warning(
            "GitHub rejected a registered repository's token; checking its access",
            repository=repository,
        )
        on_token_rejected(repository)
        return "rejected"
    headers = {k.lower(): v for k, v in failure.headers.items()}
    delay = retry_delay(status, headers, time.time(), str(failure))
    if delay is None:
        log.error(
            "GitHub refused a post; dropped",
            status=status,
            repository=repository,
            sha=sha,
            error=str(failure)[:200],
        )
        return "rejected"
    log.warning("GitHub did not take a post", status=status, retry_in_s=delay)
    return delay


def status_of(failure: Exception | None) -> int | None:
    """GitHub's answer to a post that failed; None for a network error (or no failure)."""
    return failure.status_code.value if isinstance(failure, gidgethub.HTTPException) else None


async def post_as(
    identity: GitHubIdentity,
    repository: str,
    sha: str,
    send: Callable[[str], Awaitable[Exception | None]],
    log: Any,
    on_token_rejected: Callable[[str], None] | None = None,
) -> Outcome:
    """`send` (a status or a check run, with a token) as `identity` for `repository`.

    A 401 for a token the identity can replace (an installation token that expired or was
    revoked) is answered by sending again at once with a new one, so nothing is lost; if GitHub
    refuses the new one too, this post backs off alone and no repository's posts pause for it.
    """
    try:
        token = await identity.token_for(repository)
    except GitHubUnreachable as error:
        if error.status in (403, 404):  # the installation is suspended, or gone
            log.error("not posted", repository=repository, sha=sha, error=str(error))
            return "rejected"
        log.warning("no token to post with", repository=repository, error=str(error))
        return -1.0
    if token is None:
        log.error(
            "not posted: the GitHub App is not installed on the repository",
            repository=repository,
            sha=sha,
        )
        return "rejected"
    failure = await send(token)
    if status_of(failure) == 401 and on_token_rejected is None:
        identity.token_refused(token)
        with contextlib.suppress(GitHubUnreachable):
            fresh = await identity.token_for(repository)
            if fresh is not None and fresh != token:
                log.info("GitHub refused a token; posting again with a new one")
                failure = await send(fresh)
        if status_of(failure) == 401 and identity.replaceable:
            log.warning("GitHub refused a new installation token", repository=repository)
            return -1.0
    return outcome_of(failure, repository, sha, log, on_token_rejected)
