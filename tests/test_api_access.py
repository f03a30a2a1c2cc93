"""Who may call the REST API, and what they may do, as GitHub answers it (the fake, on loopback).

A caller sends a GitHub token and its login. Wrong login, no token, a garbled or unknown token:
401. A repository the token cannot see is 404, with the very same answer whether or not it is
registered. Read access reads; changing anything needs write access (403 otherwise). An owner's
shared env is for the owner or the organisation's administrators. GitHub unreachable: 503 with
Retry-After. A burst of calls with a cold token costs GitHub one round trip, and the token never
comes back out: not in an answer, not in a header, not in the daemon's log.
"""

import asyncio
from typing import Any

import pytest

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api import Answer, ApiClient
from tests.support.api_world import (
    ALICE_TOKEN,
    OWNER,
    REPOSITORY,
    TOKENS,
    UNKNOWN_TOKEN,
    ApiWorld,
    start_world,
)
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.logcapture import daemon_log

ONE = f"/api/repositories/{REPOSITORY}"
MISSING = "/api/repositories/octo-org/does-not-exist"


@pytest.fixture
def hello(remote_root: Any) -> Remote:
    remote = make_remote(remote_root, REPOSITORY)
    remote.commit({"Makefile": makefile(test="@echo ok", deploy="@echo deployed")})
    return remote


@pytest.fixture
async def world(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, hello: Remote
) -> ApiWorld:
    return await start_world(fake_github, daemon, make_settings())


def is_problem(answer: Answer, status: int) -> bool:
    return (
        answer.status == status
        and answer.headers.get("Content-Type", "").startswith("application/problem+json")
        and answer.body.get("status") == status
    )


# (method, path suffix, body) of every call that reads or changes one repository.
READS: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("GET", "/env", None),
    ("GET", "/secrets", None),
    ("GET", "/builds", None),
]
CHANGES: list[tuple[str, str, Any]] = [
    ("PATCH", "", {"timeout": 60}),
    ("PUT", "/env", {"variables": {"LEVEL": "staging"}}),
    ("PUT", "/secrets/DEPLOY_TOKEN", {"value": "a-secret-value"}),
    ("DELETE", "/secrets/DEPLOY_TOKEN", None),
    ("POST", "/builds", {"job": "test", "ref": "main"}),
    ("DELETE", "", None),
]


async def call(api: ApiClient, method: str, path: str, body: Any = None) -> Answer:
    return await api.call(method, path, body)


async def raw_put(world: ApiWorld, path: str, body: Any) -> Answer:
    """Without the document check: the answer may be one the document does not describe."""
    assert world.daemon.client is not None
    response = await world.daemon.client.put(path, json=body, headers=world.alice.auth_headers())
    return Answer(response.status, await response.text(), dict(response.headers))


# --- who is calling -------------------------------------------------------------------------


async def test_no_authorization_is_401_with_www_authenticate(world: ApiWorld) -> None:
    answer = await world.alice.get("/api/repositories", authenticated=False)

    assert is_problem(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer    ", f"token {ALICE_TOKEN}", ALICE_TOKEN],
)
async def test_an_authorization_that_is_not_a_bearer_token_is_401_with_www_authenticate(
    world: ApiWorld, authorization: str
) -> None:
    answer = await world.alice.get(
        "/api/repositories",
        authenticated=False,
        headers={"Authorization": authorization, "X-GitHub-Username": "alice"},
    )

    assert is_problem(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["x" * 1025, "ghp_tab\tinside", "ghp_\u00e9t\u00e9"])
async def test_a_garbled_token_is_401_with_www_authenticate_and_github_is_not_asked(
    world: ApiWorld, token: str
) -> None:
    answer = await world.alice.get(
        "/api/repositories",
        authenticated=False,
        headers={"Authorization": f"Bearer {token}", "X-GitHub-Username": "alice"},
    )

    assert is_problem(answer, 401)
    assert world.fake_github.graphql_calls == 0
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")


async def test_a_token_github_does_not_know_is_401_with_www_authenticate(
    world: ApiWorld,
) -> None:
    stranger = world.alice.as_user(UNKNOWN_TOKEN, "alice")

    for method, path, body in [("GET", "/api/repositories", None), *READS, *CHANGES]:
        target = path if path.startswith("/api") else ONE + path
        answer = await call(stranger, method, target, body)
        assert is_problem(answer, 401), (method, target, answer.body)
        assert 'error="invalid_token"' in answer.headers.get("WWW-Authenticate", "")


async def test_a_token_sent_with_another_users_login_is_401(world: ApiWorld) -> None:
    await world.register_ready()
    impostor = world.alice.as_user(ALICE_TOKEN, "carol")

    for method, path, body in [("GET", "/api/repositories", None), *READS, *CHANGES]:
        target = path if path.startswith("/api") else ONE + path
        answer = await call(impostor, method, target, body)
        assert is_problem(answer, 401), (method, target, answer.body)
    shown = await world.alice.get(ONE)
    assert shown.status == 200  # nothing was changed or removed by the impostor


async def test_every_401_tells_the_client_how_to_authenticate(world: ApiWorld) -> None:
    cases = [
        world.alice.as_user(ALICE_TOKEN, "carol"),  # someone else's login
        world.alice.as_user(UNKNOWN_TOKEN, "alice"),  # GitHub does not know the token
        world.alice.as_user("x" * 2000, "alice"),  # not a token at all
    ]

    for api in cases:
        answer = await api.get("/api/repositories")
        assert answer.status == 401
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), api.login


async def test_the_login_is_compared_as_github_compares_logins(world: ApiWorld) -> None:
    shouting = world.alice.as_user(ALICE_TOKEN, "ALICE")

    assert (await shouting.get("/api/repositories")).status == 200


# --- what the caller may see ----------------------------------------------------------------


async def test_a_repository_the_token_cannot_see_is_404_for_every_call(world: ApiWorld) -> None:
    await world.register_ready()

    for method, path, body in [*READS, *CHANGES]:
        answer = await call(world.mallory, method, ONE + path, body)
        assert is_problem(answer, 404), (method, path, answer.body)
    assert (await world.alice.get(ONE)).status == 200  # still there


async def test_invisible_and_nonexistent_repositories_get_the_same_answer(
    world: ApiWorld,
) -> None:
    await world.register_ready()

    for method, path, body in [*READS, *CHANGES]:
        invisible = await call(world.mallory, method, ONE + path, body)
        missing = await call(world.mallory, method, MISSING + path, body)
        assert (invisible.status, invisible.body) == (missing.status, missing.body), path
        assert invisible.headers["Content-Type"] == missing.headers["Content-Type"]
    listed = await world.mallory.get("/api/repositories")
    assert listed.body == {"repositories": []}


async def test_a_visible_repository_that_is_not_registered_is_404(world: ApiWorld) -> None:
    for method, path, body in READS:
        answer = await call(world.alice, method, ONE + path, body)
        assert is_problem(answer, 404), (method, path)


async def test_cancelling_a_build_of_an_invisible_repository_is_404(world: ApiWorld) -> None:
    await world.register_ready()
    started = await world.alice.post(f"{ONE}/builds", {"job": "test", "ref": "main"})

    answer = await world.mallory.post(f"/api/builds/{started.body['id']}/cancel")

    assert is_problem(answer, 404)
    build = await world.build(started.body["id"])
    assert build["description"] != "Cancelled by mallory"


async def test_read_access_reads_but_changes_nothing(world: ApiWorld) -> None:
    await world.register_ready()
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": "a-secret-value"})
    started = await world.alice.post(f"{ONE}/builds", {"job": "test", "ref": "main"})

    for method, path, body in READS:
        answer = await call(world.bob, method, ONE + path, body)
        assert answer.status == 200, (method, path, answer.body)
    for method, path, body in CHANGES:
        answer = await call(world.bob, method, ONE + path, body)
        assert is_problem(answer, 403), (method, path, answer.body)
    cancel = await world.bob.post(f"/api/builds/{started.body['id']}/cancel")
    assert is_problem(cancel, 403)
    register = await world.bob.post("/api/repositories", {"owner": "octo-org", "name": "hello"})
    assert is_problem(register, 403)
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": ["DEPLOY_TOKEN"]}


async def test_read_access_may_not_register(world: ApiWorld) -> None:
    answer = await world.bob.post("/api/repositories", {"owner": "octo-org", "name": "hello"})

    assert is_problem(answer, 403)
    assert (await world.alice.get(ONE)).status == 404  # nothing registered


async def test_the_list_shows_only_what_the_caller_can_read(
    world: ApiWorld, remote_root: Any
) -> None:
    make_remote(remote_root, "octo-org/private").commit({"Makefile": makefile(test="@true")})
    world.fake_github.grant("alice", "octo-org/private", "ADMIN")
    await world.register_ready()
    await world.register_ready("octo-org/private")

    seen_by_alice = await world.alice.get("/api/repositories")
    seen_by_bob = await world.bob.get("/api/repositories")

    assert [r["repository"] for r in seen_by_alice.body["repositories"]] == [
        "octo-org/hello",
        "octo-org/private",
    ]
    assert [r["repository"] for r in seen_by_bob.body["repositories"]] == ["octo-org/hello"]


# --- an owner's shared env ------------------------------------------------------------------


async def test_an_organisation_administrator_may_use_the_owner_env(world: ApiWorld) -> None:
    put = await world.alice.put(f"/api/owners/{OWNER}/env", {"variables": {"LEVEL": "prod"}})
    got = await world.alice.get(f"/api/owners/{OWNER}/env")

    assert put.status == 200
    assert got.body == {"variables": {"LEVEL": "prod"}}


async def test_a_login_may_use_its_own_owner_env(world: ApiWorld) -> None:
    put = await world.carol.put("/api/owners/carol/env", {"variables": {"MINE": "1"}})
    got = await world.carol.get("/api/owners/Carol/env")

    assert put.status == 200
    assert got.body == {"variables": {"MINE": "1"}}


@pytest.mark.parametrize("who", ["carol", "bob", "mallory"])
async def test_others_get_404_for_an_owner_env(world: ApiWorld, who: str) -> None:
    await world.alice.put(f"/api/owners/{OWNER}/env", {"variables": {"LEVEL": "prod"}})
    api: ApiClient = getattr(world, who)

    got = await api.get(f"/api/owners/{OWNER}/env")
    put = await api.put(f"/api/owners/{OWNER}/env", {"variables": {"LEVEL": "hacked"}})
    someone_else = await api.get("/api/owners/alice/env")

    assert is_problem(got, 404)
    assert is_problem(put, 404)
    assert is_problem(someone_else, 404)
    assert (await world.alice.get(f"/api/owners/{OWNER}/env")).body == {
        "variables": {"LEVEL": "prod"}
    }


async def test_an_owner_env_of_an_unknown_organisation_is_404(world: ApiWorld) -> None:
    assert is_problem(await world.alice.get("/api/owners/no-such-org/env"), 404)


# --- GitHub unreachable ---------------------------------------------------------------------


async def test_github_down_is_503_with_retry_after_for_a_cold_token(world: ApiWorld) -> None:
    world.fake_github.graphql_down = True

    for method, path, body in [
        ("GET", "/api/repositories", None),
        ("POST", "/api/repositories", {"owner": "octo-org", "name": "hello"}),
        *[(m, ONE + p, b) for m, p, b in READS + CHANGES],
        ("GET", f"/api/owners/{OWNER}/env", None),
    ]:
        answer = await call(world.alice, method, path, body)
        assert is_problem(answer, 503), (method, path, answer.body)
        assert int(answer.headers["Retry-After"]) > 0


async def test_github_down_is_503_with_retry_after_when_only_the_login_is_cached(
    world: ApiWorld, remote_root: Any
) -> None:
    make_remote(remote_root, "octo-org/other").commit({"Makefile": makefile(test="@true")})
    world.fake_github.grant("carol", "octo-org/other", "ADMIN")
    world.fake_github.grant("alice", "octo-org/other", "READ")
    await world.register_ready("octo-org/other", by=world.carol)
    assert (await world.alice.get("/api/owners/alice/env")).status == 200  # alice's login cached
    world.fake_github.graphql_down = True

    for method, path in [("GET", "/api/repositories"), ("GET", "/api/repositories/octo-org/other")]:
        answer = await call(world.alice, method, path)
        assert is_problem(answer, 503), (path, answer.body)
        assert int(answer.headers.get("Retry-After", "0")) > 0, path


async def test_github_back_up_answers_again(world: ApiWorld) -> None:
    world.fake_github.graphql_down = True
    assert (await world.alice.get("/api/repositories")).status == 503

    world.fake_github.graphql_down = False

    assert (await world.alice.get("/api/repositories")).status == 200  # nothing failed was kept


# --- cost and secrecy -----------------------------------------------------------------------


async def test_a_burst_of_calls_with_a_cold_token_costs_one_graphql_round_trip(
    world: ApiWorld,
) -> None:
    await world.register_ready()
    before = world.fake_github.graphql_calls

    answers = await asyncio.gather(
        *[world.carol.get(ONE) for _ in range(10)],
        *[world.carol.get(f"{ONE}/env") for _ in range(10)],
    )

    assert [a.status for a in answers] == [200] * 20
    assert world.fake_github.graphql_calls - before == 1


async def test_the_token_never_comes_back_out(world: ApiWorld) -> None:
    answers: list[Answer] = []
    with daemon_log() as log:
        registered = await world.register_ready()
        answers.append(registered)
        secret_value = "the-secret-value-123"
        for api in (world.alice, world.carol, world.bob, world.mallory):
            for method, path, body in READS:
                answers.append(await call(api, method, ONE + path, body))
        answers.append(await world.alice.put(f"{ONE}/secrets/DEPLOY", {"value": secret_value}))
        answers.append(await world.bob.put(f"{ONE}/env", {"variables": {"T": ALICE_TOKEN}}))
        answers.append(await world.alice.put(f"{ONE}/env", {"variables": {"1X": ALICE_TOKEN}}))
        answers.append(await world.alice.post("/api/repositories", {"owner": ALICE_TOKEN}))
        answers.append(await world.alice.as_user(ALICE_TOKEN, "carol").get(ONE))
        answers.append(await world.alice.as_user(UNKNOWN_TOKEN, "alice").get(ONE))
        answers.append(await world.alice.as_user(ALICE_TOKEN + "x" * 1100, "alice").get(ONE))
        answers.append(await raw_put(world, f"{ONE}/secrets/SHORT", {"value": "12345"}))
        started = await world.alice.post(f"{ONE}/builds", {"job": "test", "ref": "main"})
        answers.append(started)
        await world.fake_github.wait_final(started.body["sha"])
        answers.append(await world.alice.get(f"{ONE}/builds"))
        world.fake_github.graphql_down = True
        answers.append(await world.carol.get(ONE))
        answers.append(await world.alice.as_user(UNKNOWN_TOKEN, "x").get("/api/repositories"))
        world.fake_github.graphql_down = False
        answers.append(await world.alice.delete(ONE))

    for answer in answers:
        text = f"{answer.body}{answer.headers}"
        for token in TOKENS:
            assert token not in text, answer
        assert secret_value not in text
    written = log.getvalue()
    assert written, "the daemon logged nothing: the capture is broken"
    for token in TOKENS:
        assert token not in written
    assert secret_value not in written
