"""What GitHub says about a token: whose it is, what it may do to a repository, and its hooks.

Answers are cached per token in bounded TTL caches keyed by a keyed hash of the token (never the
token itself), and concurrent misses share one request. A repository question carries the
`viewer` question along when that is not cached yet, so a cold API call costs one round trip.

GraphQL goes to the endpoint that belongs to `github.api_url` (GitHub Enterprise serves it at
`/api/graphql`, not under `/api/v3`); gidgethub's `graphql()` does not derive it from `base_url`.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import gidgethub
from gidgethub.aiohttp import GitHubAPI

from runner.core.errors import HobotnicaError
from runner.core.single_flight import SingleFlightCache

# GitHub's repository permissions, weakest first.
PERMISSIONS = ("READ", "TRIAGE", "WRITE", "MAINTAIN", "ADMIN")

# What a repository's webhook sends: pushes, pull requests, merge queues' groups.
WEBHOOK_EVENTS = ("push", "pull_request", "merge_group")

VIEWER_TTL = 300.0
ACCESS_TTL = 60.0
CACHE_SIZE = 4096

_REPOSITORY_FIELDS = (
    "repository(owner: $owner, name: $name) "
    "{ nameWithOwner viewerPermission defaultBranchRef { name } }"
)
_REPOSITORY_QUERY = f"query($owner: String!, $name: String!) {{ {_REPOSITORY_FIELDS} }}"
_VIEWER_AND_REPOSITORY_QUERY = (
    f"query($owner: String!, $name: String!) {{ viewer {{ login }} {_REPOSITORY_FIELDS} }}"
)
_VIEWER_QUERY = "query { viewer { login } }"
_ORGANIZATION_QUERY = (
    "query($login: String!) { organization(login: $login) { viewerCanAdminister } }"
)


class TokenRejected(HobotnicaError):
    """GitHub answered 401: the token is wrong, expired or revoked."""


class GitHubUnavailable(HobotnicaError):
    """GitHub could not be asked (network, 5xx, rate limit): the answer is unknown."""


@dataclass(frozen=True)
class RepositoryAccess:
    repository: str  # owner/name as GitHub spells it
    permission: str  # one of PERMISSIONS
    default_branch: str

    def allows(self, needed: str) -> bool:
        return PERMISSIONS.index(self.permission) >= PERMISSIONS.index(needed)


@dataclass(frozen=True)
class HookResult:
    hook_id: str | None
    reason: str = ""


def graphql_endpoint(api_url: str) -> str:
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/v3") + "/graphql"
    return base + "/graphql"


class GitHubAccess:
    def __init__(self, session: aiohttp.ClientSession, *, api_url: str) -> None:
        self._session = session
        self._api_url = api_url
        self._graphql_url = graphql_endpoint(api_url)
        self._hash_key = secrets.token_bytes(32)  # cache keys are useless outside this process
        self._viewers: SingleFlightCache[bytes, str] = SingleFlightCache(
            maxsize=CACHE_SIZE, ttl=VIEWER_TTL
        )
        self._access: SingleFlightCache[tuple[bytes, str], RepositoryAccess | None] = (
            SingleFlightCache(maxsize=CACHE_SIZE, ttl=ACCESS_TTL)
        )
        self._owners: SingleFlightCache[tuple[bytes, str], bool] = SingleFlightCache(
            maxsize=CACHE_SIZE, ttl=ACCESS_TTL
        )

    def _key(self, token: str) -> bytes:
        return hmac.new(self._hash_key, token.encode(), hashlib.sha256).digest()

    def _github(self, token: str) -> GitHubAPI:
        return GitHubAPI(self._session, "hobotnica", oauth_token=token, base_url=self._api_url)

    def forget(self, token: str) -> None:
        """Drop what is cached for `token` (GitHub just answered 401 for it)."""
        key = self._key(token)
        self._viewers.forget(lambda cached: cached == key)
        self._access.forget(lambda cached: cached[0] == key)
        self._owners.forget(lambda cached: cached[0] == key)

    async def viewer(self, token: str) -> str:
        """The login the token belongs to."""
        key = self._key(token)

        async def load() -> str:
            data = await self._graphql(token, _VIEWER_QUERY)
            return str(data["viewer"]["login"])

        return await self._viewers.get(key, load)

    def cached_viewer(self, token: str) -> str | None:
        return self._viewers.peek(self._key(token))

    async def repository(self, token: str, repository: str) -> RepositoryAccess | None:
        """The token's access to `owner/name`, or None when it has none (or it does not exist)."""
        key = self._key(token)
        owner, name = repository.split("/")

        async def load() -> RepositoryAccess | None:
            with_viewer = self._viewers.peek(key) is None
            query = _VIEWER_AND_REPOSITORY_QUERY if with_viewer else _REPOSITORY_QUERY
            data = await self._graphql(token, query, owner=owner, name=name, missing_ok=True)
            if with_viewer and isinstance(data.get("viewer"), dict):
                self._viewers.put(key, str(data["viewer"]["login"]))
            found = data.get("repository")
            if not isinstance(found, dict) or found.get("viewerPermission") not in PERMISSIONS:
                return None
            branch = found.get("defaultBranchRef") or {}
            return RepositoryAccess(
                repository=str(found["nameWithOwner"]),
                permission=str(found["viewerPermission"]),
                default_branch=str(branch.get("name") or ""),
            )

        return await self._access.get((key, repository.lower()), load)

    async def administers_owner(self, token: str, owner: str) -> bool:
        """True for the owner themself, or an administrator of the organisation `owner`."""
        login = await self.viewer(token)
        if login.lower() == owner.lower():
            return True
        key = self._key(token)

        async def load() -> bool:
            data = await self._graphql(token, _ORGANIZATION_QUERY, login=owner, missing_ok=True)
            organization = data.get("organization")
            return (
                isinstance(organization, dict) and organization.get("viewerCanAdminister") is True
            )

        return await self._owners.get((key, owner.lower()), load)

    async def create_hook(
        self, token: str, repository: str, *, url: str, secret: str
    ) -> HookResult:
        """Create the repository's push and pull_request webhook; needs admin rights."""
        body = {
            "name": "web",
            "active": True,
            "events": list(WEBHOOK_EVENTS),
            "config": {
                "url": url,
                "content_type": "json",
                "secret": secret,
                "insecure_ssl": "0",
            },
        }
        try:
            created = await self._github(token).post(f"/repos/{repository}/hooks", data=body)
        except gidgethub.HTTPException as error:
            status = error.status_code.value
            if status == 401:
                raise TokenRejected("GitHub rejected the token") from None
            if status in (403, 404):
                return HookResult(None, "the token may not administer the repository's hooks")
            if status == 422:
                return HookResult(None, "GitHub refused the hook (one with this URL may exist)")
            raise GitHubUnavailable(f"GitHub answered {status}") from None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise GitHubUnavailable("GitHub could not be reached") from None
        hook_id = created.get("id") if isinstance(created, dict) else None
        if hook_id is None:
            return HookResult(None, "GitHub's answer named no hook")
        return HookResult(str(hook_id))

    async def delete_hook(self, token: str, repository: str, hook_id: str) -> bool:
        try:
            await self._github(token).delete(f"/repos/{repository}/hooks/{hook_id}")
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return True

    async def _graphql(
        self, token: str, query: str, *, missing_ok: bool = False, **variables: Any
    ) -> dict[str, Any]:
        try:
            data = await self._github(token).graphql(query, endpoint=self._graphql_url, **variables)
        except gidgethub.GraphQLAuthorizationFailure:
            raise TokenRejected("GitHub rejected the token") from None
        except gidgethub.QueryError as error:
            # A repository or organisation the token cannot see is a NOT_FOUND error beside
            # `data`; other query errors mean GitHub did not answer the question.
            response = error.response if isinstance(error.response, dict) else {}
            kinds = {e.get("type") for e in response.get("errors", []) if isinstance(e, dict)}
            if missing_ok and kinds <= {"NOT_FOUND", "FORBIDDEN"}:
                return dict(response.get("data") or {})
            raise GitHubUnavailable("GitHub could not answer the query") from None
        except (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError, ValueError):
            raise GitHubUnavailable("GitHub could not be reached") from None
        if not isinstance(data, dict):
            raise GitHubUnavailable("GitHub answered with something unexpected")
        return data
