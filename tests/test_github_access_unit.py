"""`runner.registrations.github_access` against GitHub's HTTP answers, mocked with aioresponses.

What GitHub says about a token (whose it is, its permission on a repository, whether it
administers an owner) and hook creation, including every failure GitHub can answer with; where
GraphQL lives for github.com and GitHub Enterprise; and the cache in front of it all: answers
are reused, concurrent misses share one request, failures are not remembered, the token is never
a cache key, and `forget` drops a token's answers.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from runner.registrations.github_access import (
    PERMISSIONS,
    GitHubAccess,
    GitHubUnavailable,
    RepositoryAccess,
    TokenRejected,
    graphql_endpoint,
)
from tests.support.aioresponses_compat import aioresponses

API_URL = "https://api.github.com"
GRAPHQL = f"{API_URL}/graphql"
HOOKS = f"{API_URL}/repos/octo-org/hello/hooks"
TOKEN = "ghp_unit0123456789abcdefghijklmnopqrstuv"
OTHER_TOKEN = "ghp_other0123456789abcdefghijklmnopqrstu"
REPOSITORY = "octo-org/hello"


@pytest.fixture
def github() -> Iterator[aioresponses]:
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
async def access() -> AsyncIterator[GitHubAccess]:
    async with aiohttp.ClientSession() as session:
        yield GitHubAccess(session, api_url=API_URL)


def viewer(login: str = "alice") -> dict[str, Any]:
    return {"data": {"viewer": {"login": login}}}


def repository_answer(permission: str, *, with_viewer: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "repository": {
            "nameWithOwner": "Octo-Org/Hello",
            "viewerPermission": permission,
            "defaultBranchRef": {"name": "trunk"},
        }
    }
    if with_viewer:
        data["viewer"] = {"login": "alice"}
    return {"data": data}


NOT_FOUND = {
    "data": {"viewer": {"login": "alice"}, "repository": None},
    "errors": [
        {
            "type": "NOT_FOUND",
            "path": ["repository"],
            "message": "Could not resolve to a Repository with the name 'octo-org/hello'.",
        }
    ],
}


def requests_to(github: aioresponses, url: str, method: str = "POST") -> list[Any]:
    return list(github.requests.get((method, URL(url)), []))


def asks_for_viewer(call: Any) -> bool:
    return re.search(r"\bviewer\s*\{", sent_json(call)["query"]) is not None


def sent_json(call: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(call.kwargs["data"])
    return body


# --- who the token belongs to -------------------------------------------------------------


async def test_viewer_is_the_login_github_names(github: aioresponses, access: GitHubAccess) -> None:
    github.post(GRAPHQL, payload=viewer("alice"))

    assert await access.viewer(TOKEN) == "alice"

    (call,) = requests_to(github, GRAPHQL)
    assert call.kwargs["headers"]["authorization"] == f"token {TOKEN}"
    assert asks_for_viewer(call)


async def test_a_token_github_rejects_is_token_rejected(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, status=401, payload={"message": "Bad credentials"})

    with pytest.raises(TokenRejected):
        await access.viewer(TOKEN)


@pytest.mark.parametrize("status", [403, 500, 502, 503])
async def test_an_error_status_is_github_unavailable(
    github: aioresponses, access: GitHubAccess, status: int
) -> None:
    github.post(GRAPHQL, status=status, payload={"message": "try later"})

    with pytest.raises(GitHubUnavailable):
        await access.viewer(TOKEN)


async def test_an_html_error_page_is_github_unavailable(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, status=502, body="<html>Bad gateway</html>", content_type="text/html")

    with pytest.raises(GitHubUnavailable):
        await access.viewer(TOKEN)


async def test_a_connection_error_is_github_unavailable(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, exception=aiohttp.ClientConnectionError("connection refused"))

    with pytest.raises(GitHubUnavailable):
        await access.viewer(TOKEN)


async def test_a_timeout_is_github_unavailable(github: aioresponses, access: GitHubAccess) -> None:
    github.post(GRAPHQL, exception=TimeoutError())

    with pytest.raises(GitHubUnavailable):
        await access.viewer(TOKEN)


async def test_a_query_error_other_than_not_found_is_github_unavailable(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(
        GRAPHQL,
        payload={"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]},
    )

    with pytest.raises(GitHubUnavailable):
        await access.repository(TOKEN, REPOSITORY)


# --- what the token may do to a repository --------------------------------------------------


@pytest.mark.parametrize("permission", ["ADMIN", "MAINTAIN", "WRITE", "TRIAGE", "READ"])
async def test_repository_access_is_the_viewer_permission(
    github: aioresponses, access: GitHubAccess, permission: str
) -> None:
    github.post(GRAPHQL, payload=repository_answer(permission))

    found = await access.repository(TOKEN, REPOSITORY)

    assert found == RepositoryAccess(
        repository="Octo-Org/Hello", permission=permission, default_branch="trunk"
    )
    (call,) = requests_to(github, GRAPHQL)
    assert sent_json(call)["variables"] == {"owner": "octo-org", "name": "hello"}


@pytest.mark.parametrize(
    ("permission", "allowed"),
    [
        ("ADMIN", {"READ", "TRIAGE", "WRITE", "MAINTAIN", "ADMIN"}),
        ("MAINTAIN", {"READ", "TRIAGE", "WRITE", "MAINTAIN"}),
        ("WRITE", {"READ", "TRIAGE", "WRITE"}),
        ("TRIAGE", {"READ", "TRIAGE"}),
        ("READ", {"READ"}),
    ],
)
def test_a_permission_allows_itself_and_everything_weaker(
    permission: str, allowed: set[str]
) -> None:
    access = RepositoryAccess(REPOSITORY, permission, "main")

    assert {needed for needed in PERMISSIONS if access.allows(needed)} == allowed


async def test_a_repository_the_token_cannot_see_is_none(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=NOT_FOUND)

    assert await access.repository(TOKEN, REPOSITORY) is None


async def test_a_repository_question_for_a_rejected_token_is_token_rejected(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, status=401, payload={"message": "Bad credentials"})

    with pytest.raises(TokenRejected):
        await access.repository(TOKEN, REPOSITORY)


async def test_a_cold_repository_question_also_answers_whose_token_it_is(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=repository_answer("WRITE"))

    await access.repository(TOKEN, REPOSITORY)

    assert access.cached_viewer(TOKEN) == "alice"
    assert await access.viewer(TOKEN) == "alice"
    (call,) = requests_to(github, GRAPHQL)  # one round trip for both questions
    assert asks_for_viewer(call)


async def test_a_warm_repository_question_does_not_ask_for_the_viewer_again(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=viewer())
    github.post(GRAPHQL, payload=repository_answer("READ", with_viewer=False))

    await access.viewer(TOKEN)
    await access.repository(TOKEN, REPOSITORY)

    first, second = requests_to(github, GRAPHQL)
    assert asks_for_viewer(first)
    assert not asks_for_viewer(second)


# --- owners -------------------------------------------------------------------------------


async def test_a_login_administers_its_own_account(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=viewer("alice"))

    assert await access.administers_owner(TOKEN, "Alice") is True
    assert len(requests_to(github, GRAPHQL)) == 1  # no organisation question


@pytest.mark.parametrize(
    ("organization", "expected"),
    [
        ({"viewerCanAdminister": True}, True),
        ({"viewerCanAdminister": False}, False),
    ],
)
async def test_an_organisation_is_administered_when_github_says_so(
    github: aioresponses, access: GitHubAccess, organization: dict[str, Any], expected: bool
) -> None:
    github.post(GRAPHQL, payload=viewer("alice"))
    github.post(GRAPHQL, payload={"data": {"organization": organization}})

    assert await access.administers_owner(TOKEN, "octo-org") is expected
    _, asked = requests_to(github, GRAPHQL)
    assert sent_json(asked)["variables"] == {"login": "octo-org"}


async def test_an_owner_github_does_not_show_is_not_administered(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=viewer("alice"))
    github.post(
        GRAPHQL,
        payload={
            "data": {"organization": None},
            "errors": [{"type": "NOT_FOUND", "path": ["organization"], "message": "nope"}],
        },
    )

    assert await access.administers_owner(TOKEN, "someone-else") is False


# --- where GraphQL lives --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_url", "endpoint"),
    [
        ("https://api.github.com", "https://api.github.com/graphql"),
        ("https://api.github.com/", "https://api.github.com/graphql"),
        ("https://ghe.example/api/v3", "https://ghe.example/api/graphql"),
        ("https://ghe.example/api/v3/", "https://ghe.example/api/graphql"),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001/graphql"),
    ],
)
def test_graphql_endpoint_belongs_to_the_api_url(api_url: str, endpoint: str) -> None:
    assert graphql_endpoint(api_url) == endpoint


async def test_github_enterprise_is_asked_at_its_own_graphql_endpoint(
    github: aioresponses,
) -> None:
    github.post("https://ghe.example/api/graphql", payload=viewer("enterprise-user"))

    async with aiohttp.ClientSession() as session:
        access = GitHubAccess(session, api_url="https://ghe.example/api/v3")
        assert await access.viewer(TOKEN) == "enterprise-user"

    assert len(requests_to(github, "https://ghe.example/api/graphql")) == 1


# --- hooks ----------------------------------------------------------------------------------


async def test_creating_a_hook_returns_its_id_and_sends_what_github_needs(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(HOOKS, status=201, payload={"id": 12345678, "type": "Repository"})

    created = await access.create_hook(
        TOKEN, REPOSITORY, url="https://ci.example/webhooks/abc", secret="hook-secret-value"
    )

    assert created.hook_id == "12345678"
    (call,) = requests_to(github, HOOKS)
    body = sent_json(call)
    assert body["name"] == "web"
    assert body["active"] is True
    assert sorted(body["events"]) == ["merge_group", "pull_request", "push"]
    assert body["config"]["url"] == "https://ci.example/webhooks/abc"
    assert body["config"]["content_type"] == "json"
    assert body["config"]["secret"] == "hook-secret-value"
    assert body["config"]["insecure_ssl"] == "0"
    assert call.kwargs["headers"]["authorization"] == f"token {TOKEN}"


@pytest.mark.parametrize("status", [403, 404])
async def test_a_token_that_may_not_administer_hooks_gets_no_hook_and_a_reason(
    github: aioresponses, access: GitHubAccess, status: int
) -> None:
    github.post(HOOKS, status=status, payload={"message": "Not Found"})

    created = await access.create_hook(TOKEN, REPOSITORY, url="https://ci.example/h", secret="s")

    assert created.hook_id is None
    assert "administer" in created.reason


async def test_a_refused_hook_gets_no_hook_and_a_reason(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(
        HOOKS,
        status=422,
        payload={"message": "Validation Failed", "errors": [{"message": "Hook already exists"}]},
    )

    created = await access.create_hook(TOKEN, REPOSITORY, url="https://ci.example/h", secret="s")

    assert created.hook_id is None
    assert created.reason


async def test_a_hook_for_a_rejected_token_is_token_rejected(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(HOOKS, status=401, payload={"message": "Bad credentials"})

    with pytest.raises(TokenRejected):
        await access.create_hook(TOKEN, REPOSITORY, url="https://ci.example/h", secret="s")


async def test_a_hook_github_cannot_create_now_is_github_unavailable(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(HOOKS, status=500, payload={"message": "Server Error"})
    github.post(HOOKS, exception=aiohttp.ClientConnectionError("reset"))

    for _ in range(2):
        with pytest.raises(GitHubUnavailable):
            await access.create_hook(TOKEN, REPOSITORY, url="https://ci.example/h", secret="s")


async def test_deleting_a_hook_says_whether_github_deleted_it(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.delete(f"{HOOKS}/7", status=204)
    github.delete(f"{HOOKS}/8", status=404, payload={"message": "Not Found"})

    assert await access.delete_hook(TOKEN, REPOSITORY, "7") is True
    assert await access.delete_hook(TOKEN, REPOSITORY, "8") is False


# --- the cache ------------------------------------------------------------------------------


async def test_a_second_question_is_answered_from_the_cache(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=repository_answer("WRITE"))

    first = await access.repository(TOKEN, REPOSITORY)
    second = await access.repository(TOKEN, "OCTO-ORG/HELLO")
    login = await access.viewer(TOKEN)

    assert first == second
    assert login == "alice"
    assert len(requests_to(github, GRAPHQL)) == 1


async def test_another_token_is_asked_for_itself(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=viewer("alice"))
    github.post(GRAPHQL, payload=viewer("bob"))

    assert await access.viewer(TOKEN) == "alice"
    assert await access.viewer(OTHER_TOKEN) == "bob"
    assert len(requests_to(github, GRAPHQL)) == 2


async def test_twenty_concurrent_calls_for_a_cold_token_cost_one_request(
    github: aioresponses, access: GitHubAccess
) -> None:
    answering = asyncio.Event()
    release = asyncio.Event()

    async def held(url: URL, **kwargs: Any) -> None:
        answering.set()
        await release.wait()  # every caller has asked by the time GitHub answers

    github.post(GRAPHQL, payload=viewer("alice"), callback=held)

    callers = [asyncio.ensure_future(access.viewer(TOKEN)) for _ in range(20)]
    await answering.wait()
    release.set()
    logins = await asyncio.gather(*callers)

    assert logins == ["alice"] * 20
    assert len(requests_to(github, GRAPHQL)) == 1


async def test_twenty_concurrent_repository_calls_cost_one_request(
    github: aioresponses, access: GitHubAccess
) -> None:
    answering = asyncio.Event()
    release = asyncio.Event()

    async def held(url: URL, **kwargs: Any) -> None:
        answering.set()
        await release.wait()

    github.post(GRAPHQL, payload=repository_answer("ADMIN"), callback=held)

    callers = [asyncio.ensure_future(access.repository(TOKEN, REPOSITORY)) for _ in range(20)]
    await answering.wait()
    release.set()
    found = await asyncio.gather(*callers)

    assert {f.permission for f in found if f is not None} == {"ADMIN"}
    assert None not in found
    assert len(requests_to(github, GRAPHQL)) == 1


async def test_a_failed_question_is_not_remembered(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, status=502, payload={"message": "Server Error"})
    github.post(GRAPHQL, payload=viewer("alice"))

    with pytest.raises(GitHubUnavailable):
        await access.viewer(TOKEN)
    assert await access.viewer(TOKEN) == "alice"

    assert len(requests_to(github, GRAPHQL)) == 2


async def test_a_rejected_token_is_not_remembered(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, status=401, payload={"message": "Bad credentials"})
    github.post(GRAPHQL, payload=viewer("alice"))

    with pytest.raises(TokenRejected):
        await access.viewer(TOKEN)
    assert await access.viewer(TOKEN) == "alice"


async def test_the_token_is_never_a_cache_key(github: aioresponses, access: GitHubAccess) -> None:
    github.post(GRAPHQL, payload=repository_answer("ADMIN"))
    github.post(GRAPHQL, payload={"data": {"organization": {"viewerCanAdminister": True}}})

    await access.repository(TOKEN, REPOSITORY)
    await access.administers_owner(TOKEN, "octo-org")

    keys = [
        repr(key)
        for cache in (access._viewers, access._access, access._owners)
        for key in cache._cache
    ]
    assert len(keys) == 3
    for key in keys:
        assert TOKEN not in key
        assert TOKEN.encode().hex() not in key
        assert "ghp_" not in key


async def test_forget_drops_the_tokens_answers_and_only_its(
    github: aioresponses, access: GitHubAccess
) -> None:
    github.post(GRAPHQL, payload=repository_answer("ADMIN"))
    github.post(GRAPHQL, payload=viewer("bob"))
    github.post(GRAPHQL, payload=repository_answer("READ"))

    await access.repository(TOKEN, REPOSITORY)
    await access.viewer(OTHER_TOKEN)
    access.forget(TOKEN)

    assert access.cached_viewer(TOKEN) is None
    assert access.cached_viewer(OTHER_TOKEN) == "bob"
    found = await access.repository(TOKEN, REPOSITORY)  # asked again, and GitHub changed its mind
    assert found is not None and found.permission == "READ"
    assert len(requests_to(github, GRAPHQL)) == 3
