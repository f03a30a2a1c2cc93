"""Who is calling, and what they may do: answered by GitHub, as the original Hobotnica did.

The caller sends `Authorization: Bearer <GitHub token>` and `X-GitHub-Username`. The token must
belong to that login (401 otherwise). Reading a repository needs read access, changing it needs
write access, creating its GitHub hook needs admin access. A repository the token cannot see is
404, registered or not, so the API never tells a stranger what exists. An unreachable GitHub is
503. The token itself is never logged, echoed or put in an error.
"""

from dataclasses import dataclass, field

from aiohttp import web

from runner.api.problems import ProblemError, not_found
from runner.registrations.github_access import (
    GitHubAccess,
    GitHubUnavailable,
    RepositoryAccess,
    TokenRejected,
)

RETRY_AFTER = "30"
MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class Caller:
    login: str
    token: str = field(repr=False)


HOW_TO_AUTHENTICATE = (
    "send a GitHub token as 'Authorization: Bearer <token>' and its owner's login as "
    "X-GitHub-Username"
)


def unauthorized(detail: str, *, invalid_token: bool = False) -> ProblemError:
    """A 401, which always says how to authenticate (RFC 9110, WWW-Authenticate)."""
    challenge = 'Bearer realm="hobotnica"' + (', error="invalid_token"' if invalid_token else "")
    return ProblemError(401, detail, headers={"WWW-Authenticate": challenge})


def github_unavailable() -> ProblemError:
    return ProblemError(
        503,
        "GitHub could not be asked about the token; try again",
        headers={"Retry-After": RETRY_AFTER},
    )


def token_rejected() -> ProblemError:
    return unauthorized("GitHub does not accept this token", invalid_token=True)


def _token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized(HOW_TO_AUTHENTICATE)
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise unauthorized("that is not a GitHub token", invalid_token=True)
    return token


class Authenticator:
    def __init__(self, access: GitHubAccess) -> None:
        self._access = access

    async def caller(self, request: web.Request) -> Caller:
        token = _token(request)
        username = request.headers.get("X-GitHub-Username", "").strip()
        try:
            login = await self._access.viewer(token)
        except TokenRejected:
            self._access.forget(token)
            raise token_rejected() from None
        except GitHubUnavailable:
            raise github_unavailable() from None
        if not username or login.lower() != username.lower():
            raise unauthorized("the token does not belong to the user in X-GitHub-Username")
        return Caller(login=login, token=token)

    async def repository(
        self, request: web.Request, repository: str, needed: str = "READ"
    ) -> tuple[Caller, RepositoryAccess]:
        """The caller and their access to `repository`, which must allow `needed`.

        A cold token costs one GitHub round trip: the repository question carries the viewer
        question along.
        """
        token = _token(request)
        try:
            if self._access.cached_viewer(token) is None:
                found = await self._access.repository(token, repository)
                caller = await self.caller(request)
            else:
                caller = await self.caller(request)
                found = await self._access.repository(token, repository)
        except TokenRejected:
            self._access.forget(token)
            raise token_rejected() from None
        except GitHubUnavailable:
            raise github_unavailable() from None
        if found is None:
            raise not_found()
        if not found.allows(needed):
            raise ProblemError(
                403, f"this needs {needed.lower()} access to the repository on GitHub"
            )
        return caller, found

    async def owner_admin(self, request: web.Request, owner: str) -> Caller:
        """The caller, who must be `owner` or an administrator of the organisation `owner`."""
        caller = await self.caller(request)
        try:
            allowed = await self._access.administers_owner(caller.token, owner)
        except TokenRejected:
            self._access.forget(caller.token)
            raise token_rejected() from None
        except GitHubUnavailable:
            raise github_unavailable() from None
        if not allowed:
            raise not_found()
        return caller
