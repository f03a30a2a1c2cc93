"""Every error the REST API answers is an RFC 9457 problem document a client can act on.

`application/problem+json` with `type`, `title` (the status's phrase) and `status` (the HTTP
status); a validation failure lists each failing field (a JSON pointer into the body, or the
parameter's name); never a Python exception's name or traceback, never a value the request sent
(it may be a secret).
"""

import http
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api import Answer
from tests.support.api_world import (
    ALICE_TOKEN,
    REPOSITORY,
    UNKNOWN_TOKEN,
    ApiWorld,
    start_world,
)
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile

ONE = f"/api/repositories/{REPOSITORY}"
SECRET_VALUE = "do-not-echo-this-secret-4711"


@pytest.fixture
def hello(remote_root: Path) -> Remote:
    remote = make_remote(remote_root, REPOSITORY)
    remote.commit({"Makefile": makefile(test="@echo ok")})
    return remote


@pytest.fixture
async def world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    world = await start_world(fake_github, daemon, make_settings())
    await world.register_ready()
    return world


def exception_names() -> set[str]:
    """Names of the exception classes loaded in this process (CamelCase ones: `ValueError`)."""
    names: set[str] = set()
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return {name for name in names if re.fullmatch(r"_?[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+", name)}


EXCEPTION_NAMES = exception_names()


def assert_problem(status: int, content_type: str, body: Any, text: str) -> None:
    assert content_type.split(";")[0].strip() == "application/problem+json", content_type
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str) and body["type"], body
    assert body.get("title") == http.HTTPStatus(status).phrase, body
    assert body.get("status") == status, body
    for marker in ("Traceback", 'File "', "Exception"):
        assert marker not in text, text
    leaked = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) & EXCEPTION_NAMES
    assert not leaked, f"exception names in {text}"
    assert SECRET_VALUE not in text
    assert ALICE_TOKEN not in text


def check(answer: Answer, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body)
    assert_problem(status, answer.headers.get("Content-Type", ""), answer.body, str(answer.body))


async def test_each_kind_of_error_is_a_problem_document(world: ApiWorld) -> None:
    world.fake_github.grant("alice", "octo/app", "ADMIN")
    check(await world.alice.post("/api/repositories", {"owner": "a/b", "name": "c"}), 400)
    check(await world.alice.get(ONE, authenticated=False), 401)
    check(await world.alice.as_user(UNKNOWN_TOKEN, "alice").get(ONE), 401)
    check(await world.alice.as_user(ALICE_TOKEN, "carol").get(ONE), 401)
    check(await world.bob.patch(ONE, {"timeout": 10}), 403)
    check(await world.mallory.get(ONE), 404)
    check(await world.alice.post("/api/repositories", {"owner": "octo", "name": "app"}), 409)
    check(await world.alice.put(f"{ONE}/secrets/CI", {"value": SECRET_VALUE}), 422)
    check(await world.alice.post(f"{ONE}/builds", {"job": "test", "ref": "nope"}), 422)
    world.fake_github.graphql_down = True
    check(await world.carol.get(ONE), 503)


async def test_a_validation_failure_points_at_each_field(world: ApiWorld) -> None:
    answer = await world.alice.post(
        "/api/repositories", {"owner": "a/b", "name": "ok", "jobs": ["test", "build"]}
    )

    check(answer, 400)
    errors = answer.body["errors"]
    assert {(e["location"], e.get("pointer")) for e in errors} == {
        ("body", "/owner"),
        ("body", "/jobs/1"),
    }
    assert all(e["message"] for e in errors)


async def test_a_missing_or_unknown_field_is_named(world: ApiWorld) -> None:
    answer = await world.alice.post("/api/repositories", {"name": "hello", "colour": "blue"})

    check(answer, 400)
    messages = " ".join(e["message"] for e in answer.body["errors"])
    assert "owner" in messages and "colour" in messages


async def test_a_body_that_is_not_json_is_400_saying_so(world: ApiWorld) -> None:
    assert world.daemon.client is not None
    response = await world.daemon.client.post(
        "/api/repositories",
        data=b"{not json " + SECRET_VALUE.encode(),
        headers={**world.alice.auth_headers(), "Content-Type": "application/json"},
    )
    body = await response.json(content_type=None)

    assert response.status == 400
    assert_problem(400, response.headers["Content-Type"], body, str(body))
    assert [e["location"] for e in body["errors"]] == ["body"]


@pytest.mark.parametrize(
    "body",
    [
        {"owner": SECRET_VALUE + "/x", "name": "hello"},
        {"owner": "octo-org", "name": "hello", "timeout": SECRET_VALUE},
        {"owner": "octo-org", "name": "hello", "jobs": [SECRET_VALUE]},
        # An unknown field is named (see above); its value is not.
        {"owner": "octo-org", "name": "hello", "colour": SECRET_VALUE},
        {"owner": "octo-org", "name": "hello", "deploy_branch": 7, "token": SECRET_VALUE},
    ],
)
async def test_a_validation_failure_never_quotes_the_value_sent(
    world: ApiWorld, body: dict[str, Any]
) -> None:
    answer = await world.alice.post("/api/repositories", body)

    check(answer, 400)


async def test_a_bad_secret_or_env_never_quotes_the_value_sent(world: ApiWorld) -> None:
    answers = [
        await world.alice.put(f"{ONE}/secrets/X", {"value": 4711}),
        await world.alice.put(f"{ONE}/secrets/X", {"value": SECRET_VALUE, "extra": SECRET_VALUE}),
        await world.alice.put(f"{ONE}/secrets/X", {"value": SECRET_VALUE + "\u0000"}),
        await world.alice.put(f"{ONE}/env", {"variables": {"1X": SECRET_VALUE, "CI": "y"}}),
        await world.alice.put(f"{ONE}/env", {"variables": {"A": SECRET_VALUE + "\u0000"}}),
    ]

    for answer in answers:
        assert answer.status in (400, 422), answer.body
        check(answer, answer.status)


async def test_a_bad_query_parameter_names_it_in_words(world: ApiWorld) -> None:
    answer = await world.alice.get(f"{ONE}/builds", params={"per_page": "many"})

    check(answer, 400)
    (error,) = answer.body["errors"]
    assert (error["location"], error["name"]) == ("query", "per_page")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/repositories/-x/hello", None),
        ("DELETE", "/api/repositories/octo-org/hello%20world", None),
        ("GET", "/api/repositories/octo-org/-x/env", None),
        ("GET", "/api/owners/-x/env", None),
        ("DELETE", f"{ONE}/secrets/1X", None),
        ("GET", "/api/builds/0", None),
        ("GET", "/api/builds/0/log", None),
        ("POST", "/api/builds/0/cancel", None),
        ("GET", "/api/builds/9007199254740992", None),
    ],
)
async def test_an_invalid_path_parameter_is_a_documented_400(
    world: ApiWorld, method: str, path: str, body: Any
) -> None:
    answer = await world.alice.call(method, path, body)

    check(answer, 400)


@pytest.mark.parametrize(
    "body",
    [
        {"owner": "octo-org", "name": "hello", "timeout": 0},
        {"owner": "octo-org", "name": "hello", "timeout": 86401},
        {"owner": "octo-org", "name": "x" * 101},
        {"owner": "octo-org", "name": "hello", "jobs": []},
        {"owner": "octo-org", "name": "hello", "jobs": ["test", "test"]},
    ],
)
async def test_a_value_out_of_its_documented_range_is_400(
    world: ApiWorld, body: dict[str, Any]
) -> None:
    answer = await world.alice.post("/api/repositories", body)

    check(answer, 400)
    assert answer.body["errors"]


async def test_an_unknown_api_path_is_a_problem_404(world: ApiWorld) -> None:
    assert world.daemon.client is not None
    response = await world.daemon.client.get("/api/nothing-here")
    body = await response.json(content_type=None)

    assert response.status == 404
    assert_problem(404, response.headers["Content-Type"], body, str(body))


async def test_a_method_the_path_does_not_have_is_405_naming_the_allowed_ones(
    world: ApiWorld,
) -> None:
    # 405 is not in the document (no operation to describe it), so the raw client.
    assert world.daemon.client is not None
    response = await world.daemon.client.delete(
        "/api/repositories", headers=world.alice.auth_headers()
    )
    body = await response.json(content_type=None)

    assert response.status == 405
    assert_problem(405, response.headers["Content-Type"], body, str(body))
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
    assert {"GET", "POST"} <= allowed, response.headers.get("Allow")


async def test_a_body_over_a_mebibyte_is_a_problem_413(world: ApiWorld) -> None:
    # 413 is not in the document (no operation to describe it), so the raw client.
    assert world.daemon.client is not None
    response = await world.daemon.client.put(
        f"{ONE}/env",
        data=b'{"variables": {"A": "' + b"x" * (1024 * 1024) + b'"}}',
        headers={**world.alice.auth_headers(), "Content-Type": "application/json"},
    )
    body = await response.json(content_type=None)

    assert response.status == 413
    assert_problem(413, response.headers["Content-Type"], body, str(body))
    assert (await world.alice.get(f"{ONE}/env")).body == {"variables": {}}
