"""Who Hobotnica is on GitHub for a repository: the daemon's token, or a GitHub App's
installation token.

Everything that talks to GitHub for a repository (status posts, clones and fetches, catch-up)
asks `token_for(repository)` and, when GitHub answers 401, says `token_refused(token)`.

- `DaemonToken`: one token for everything (`github.token`), as the older runners do.
- `GitHubApp`: a JWT signed with the App's private key (gidgethub's `apps.get_jwt`: RS256,
  `iss` = the app id, issued 60 s in the past for clock drift, 10 minutes' lifetime) finds each
  repository's installation (`GET /repos/{owner}/{repo}/installation`, or the `installation.id`
  a webhook carried) and gets that installation's token
  (`POST /app/installations/{id}/access_tokens`). The token is shared by every repository of
  the installation and cached until `TOKEN_MARGIN` before its `expires_at`, or until GitHub
  refuses it. While moving from a token to an App, the config's projects the App is not
  installed on yet keep using `github.token` — never a repository an installation registered.

Concurrent callers that miss the same installation or token share one request. The key and the
tokens never leave this object except as the token handed to the caller; reprs hide them.
"""

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from runner.core.errors import HobotnicaError
from runner.core.single_flight import SingleFlightCache

# An installation token is fetched again this long before GitHub says it expires (an hour
# after it was made): a build's fetch or a status post never starts with a token about to end.
TOKEN_MARGIN = 300.0
# Which installation a repository belongs to changes rarely (an App uninstalled and installed
# again); a repository the App is not installed on is asked about again sooner.
INSTALLATION_TTL = 3600.0
NOT_INSTALLED_TTL = 60.0
CACHE_SIZE = 4096
USER_AGENT = "hobotnica"


class GitHubUnreachable(HobotnicaError):
    """GitHub could not be asked for a credential (network, 5xx, or it refused the App).

    `status`: GitHub's answer, when it gave one (404: no such installation; 403: suspended).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubIdentity(Protocol):
    # Whether a token GitHub refused can be replaced by asking again (an App's can).
    replaceable: bool

    async def token_for(self, repository: str) -> str | None:
        """The token to act on `repository` with; None when there is none."""

    def token_refused(self, token: str) -> None:
        """GitHub answered 401 for `token`: never hand it out again."""


@dataclass(frozen=True)
class DaemonToken:
    """`github.token` for every repository (or nothing, without one)."""

    token: str | None = field(repr=False)
    replaceable = False

    async def token_for(self, repository: str) -> str | None:
        return self.token

    def token_refused(self, token: str) -> None:
        """Nothing to refresh: a person has to replace the token."""


@dataclass(frozen=True)
class _InstallationToken:
    token: str = field(repr=False)
    renew_at: float


class GitHubApp:
    replaceable = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        app_id: int,
        private_key: str,
        fallback_token: str | None = None,
        may_fall_back: Callable[[str], bool] = lambda _repository: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._api_url = api_url
        self._app_id = app_id
        self._private_key = private_key
        self._fallback_token = fallback_token
        self._may_fall_back = may_fall_back
        self._clock = clock
        self._installations: dict[str, tuple[int | None, float]] = {}
        self._looking_up: SingleFlightCache[str, int | None] = SingleFlightCache(
            maxsize=CACHE_SIZE, ttl=1.0
        )
        self._tokens: dict[int, _InstallationToken] = {}
        self._fetching: dict[int, asyncio.Future[_InstallationToken]] = {}

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self._app_id}, api_url={self._api_url!r})"

    @property
    def app_id(self) -> int:
        return self._app_id

    def jwt(self) -> str:
        """A fresh JWT that authenticates the App itself (for the `/app` endpoints)."""
        from gidgethub import apps  # PyJWT and cryptography: 10 MiB a token-only daemon never needs

        return apps.get_jwt(app_id=str(self._app_id), private_key=self._private_key)

    def api(self, token: str | None = None) -> GitHubAPI:
        """The API as the App (pass `jwt=self.jwt()`), or with an installation's `token`."""
        return GitHubAPI(self._session, USER_AGENT, oauth_token=token, base_url=self._api_url)

    def remember_installation(self, repository: str, installation_id: int) -> None:
        """A webhook for `repository` came through installation `installation_id`."""
        self._remember(repository.lower(), installation_id, INSTALLATION_TTL)

    def _remember(self, key: str, installation_id: int | None, ttl: float) -> None:
        if len(self._installations) >= CACHE_SIZE and key not in self._installations:
            del self._installations[next(iter(self._installations))]  # the oldest
        self._installations[key] = (installation_id, self._clock() + ttl)

    def forget_installation(self, repository: str) -> None:
        self._installations.pop(repository.lower(), None)

    async def installation_of(self, repository: str) -> int | None:
        """The id of the App's installation on `repository`; None when it is not installed."""
        key = repository.lower()
        cached = self._installations.get(key)
        if cached is not None and cached[1] > self._clock():
            return cached[0]

        async def look_up() -> int | None:
            try:
                found = await _asking(
                    "finding the App's installation",
                    self.api().getitem(f"/repos/{repository}/installation", jwt=self.jwt()),
                )
            except GitHubUnreachable as error:
                if error.status != 404:
                    raise
                self._remember(key, None, NOT_INSTALLED_TTL)
                return None
            installation_id = int(found["id"])
            self.remember_installation(repository, installation_id)
            return installation_id

        return await self._looking_up.get(key, look_up)

    async def token_for(self, repository: str) -> str | None:
        installation_id = await self.installation_of(repository)
        if installation_id is None:
            return self._fallback(repository)
        try:
            return await self.installation_token(installation_id)
        except GitHubUnreachable as error:
            if error.status != 404:
                raise
        # That installation is gone (the App was uninstalled, perhaps installed again).
        self.forget_installation(repository)
        installation_id = await self.installation_of(repository)
        if installation_id is None:
            return self._fallback(repository)
        return await self.installation_token(installation_id)

    def _fallback(self, repository: str) -> str | None:
        return self._fallback_token if self._may_fall_back(repository) else None

    async def installation_token(self, installation_id: int) -> str:
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.renew_at > self._clock():
            return cached.token
        fetching = self._fetching.get(installation_id)
        if fetching is None:
            fetching = asyncio.ensure_future(self._new_token(installation_id))
            self._fetching[installation_id] = fetching
            fetching.add_done_callback(lambda _done: self._fetching.pop(installation_id, None))
        # shield: one caller giving up does not cancel the request the others wait for.
        return (await asyncio.shield(fetching)).token

    def tokens(self) -> list[str]:
        """The installation tokens in use now (every output masks them)."""
        return [cached.token for cached in self._tokens.values()]

    def token_refused(self, token: str) -> None:
        for installation_id, cached in list(self._tokens.items()):
            if cached.token == token:
                del self._tokens[installation_id]

    async def _new_token(self, installation_id: int) -> _InstallationToken:
        from gidgethub import apps  # see jwt()

        answer = await _asking(
            "getting an installation token",
            apps.get_installation_access_token(
                self.api(),
                installation_id=str(installation_id),
                app_id=str(self._app_id),
                private_key=self._private_key,
            ),
        )
        token = _InstallationToken(
            token=str(answer["token"]),
            renew_at=expires_at(answer.get("expires_at"), self._clock()) - TOKEN_MARGIN,
        )
        self._tokens[installation_id] = token
        return token

    async def check(self) -> dict[str, Any]:
        """`GET /app` with the JWT: GitHub's description of the App (`check-config --online`)."""
        answer = await _asking(
            "authenticating as the App", self.api().getitem("/app", jwt=self.jwt())
        )
        return dict(answer)


async def _asking(doing: str, request: Awaitable[Any]) -> Any:
    """GitHub's answer to `request`, or `GitHubUnreachable` saying what failed while `doing`."""
    try:
        return await request
    except gidgethub.HTTPException as error:
        raise _refused(doing, error) from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise GitHubUnreachable(f"GitHub could not be reached ({type(error).__name__})") from None


def expires_at(value: object, now: float) -> float:
    """GitHub's `expires_at` (ISO 8601) as epoch seconds; an hour from `now` when unreadable
    (installation tokens live an hour)."""
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return now + 3600.0


def _refused(doing: str, error: gidgethub.HTTPException) -> GitHubUnreachable:
    status = error.status_code.value
    if status == 401:
        return GitHubUnreachable(
            f"GitHub refused the App's JWT while {doing} (401): check github.app_id, the "
            "private key, and this machine's clock",
            status,
        )
    return GitHubUnreachable(f"GitHub answered {status} while {doing}", status)
