"""Build variables through the REST API: a repository's env (replaced whole, names checked) and its
secrets (written, listed by name, deleted; their values never come back out of any endpoint).
"""

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api import Answer
from tests.support.api_world import (
    REPOSITORY,
    ApiWorld,
    start_world,
)
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile

ONE = f"/api/repositories/{REPOSITORY}"
SECRET_VALUE = "pa55-w0rd-for-deploys"


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


def pointers(answer: Answer) -> list[str]:
    return [entry.get("pointer", "") for entry in answer.body.get("errors", [])]


# --- env ------------------------------------------------------------------------------------


async def test_put_env_replaces_the_whole_set(world: ApiWorld) -> None:
    first = await world.alice.put(f"{ONE}/env", {"variables": {"A": "1", "B": "2"}})
    second = await world.carol.put(f"{ONE}/env", {"variables": {"C": "3"}})

    assert first.body == {"variables": {"A": "1", "B": "2"}}
    assert second.body == {"variables": {"C": "3"}}
    assert (await world.bob.get(f"{ONE}/env")).body == {"variables": {"C": "3"}}


async def test_an_empty_env_clears_it(world: ApiWorld) -> None:
    await world.alice.put(f"{ONE}/env", {"variables": {"A": "1"}})

    cleared = await world.alice.put(f"{ONE}/env", {"variables": {}})

    assert cleared.body == {"variables": {}}


@pytest.mark.parametrize(
    ("name", "pointer"),
    [
        ("1BAD", "/variables/1BAD"),
        ("WITH-DASH", "/variables/WITH-DASH"),
        ("a/b", "/variables/a~1b"),
        ("CI", "/variables/CI"),
        ("HOBOTNICA_BUILD_ID", "/variables/HOBOTNICA_BUILD_ID"),
        ("HOBOTNICA", "/variables/HOBOTNICA"),
    ],
)
async def test_an_unusable_env_name_is_422_pointing_at_it(
    world: ApiWorld, name: str, pointer: str
) -> None:
    await world.alice.put(f"{ONE}/env", {"variables": {"KEPT": "1"}})

    answer = await world.alice.put(f"{ONE}/env", {"variables": {"GOOD": "1", name: "x"}})

    assert answer.status == 422
    assert pointers(answer) == [pointer]
    assert (await world.alice.get(f"{ONE}/env")).body == {"variables": {"KEPT": "1"}}


async def test_an_env_value_with_a_nul_is_422(world: ApiWorld) -> None:
    answer = await world.alice.put(f"{ONE}/env", {"variables": {"A": "x\u0000y"}})

    assert answer.status == 422
    assert pointers(answer) == ["/variables/A"]


async def test_an_env_that_is_not_a_map_of_strings_is_400(world: ApiWorld) -> None:
    for body in ({"variables": {"A": 1}}, {"variables": ["A"]}, {}, {"env": {}}):
        answer = await world.alice.put(f"{ONE}/env", body)
        assert answer.status == 400, body


async def test_too_many_env_variables_is_400(world: ApiWorld) -> None:
    variables = {f"V{i}": "x" for i in range(201)}

    answer = await world.alice.put(f"{ONE}/env", {"variables": variables})

    assert answer.status == 400
    assert pointers(answer) == ["/variables"]


# --- secrets --------------------------------------------------------------------------------


async def test_a_secret_is_created_then_replaced(world: ApiWorld) -> None:
    created = await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})
    replaced = await world.carol.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE + "2"})

    assert (created.status, created.body) == (201, "")
    assert (replaced.status, replaced.body) == (204, "")


async def test_secrets_are_listed_by_name_only(world: ApiWorld) -> None:
    await world.alice.put(f"{ONE}/secrets/ZED", {"value": SECRET_VALUE})
    await world.alice.put(f"{ONE}/secrets/ALPHA", {"value": SECRET_VALUE})

    listed = await world.bob.get(f"{ONE}/secrets")

    assert listed.body == {"secrets": ["ALPHA", "ZED"]}


async def test_a_secret_is_not_an_env_variable(world: ApiWorld) -> None:
    await world.alice.put(f"{ONE}/env", {"variables": {"LEVEL": "prod"}})
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})

    assert (await world.alice.get(f"{ONE}/env")).body == {"variables": {"LEVEL": "prod"}}
    replaced = await world.alice.put(f"{ONE}/env", {"variables": {}})
    assert replaced.status == 200
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": ["DEPLOY_TOKEN"]}


async def test_deleting_a_secret_is_204_then_404(world: ApiWorld) -> None:
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})

    first = await world.alice.delete(f"{ONE}/secrets/DEPLOY_TOKEN")
    second = await world.alice.delete(f"{ONE}/secrets/DEPLOY_TOKEN")

    assert first.status == 204
    assert second.status == 404
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": []}


@pytest.mark.parametrize("name", ["CI", "HOBOTNICA_X", "HOBOTNICA"])
async def test_a_reserved_secret_name_is_422(world: ApiWorld, name: str) -> None:
    answer = await world.alice.put(f"{ONE}/secrets/{name}", {"value": SECRET_VALUE})

    assert answer.status == 422
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": []}


async def test_a_secret_name_that_is_not_a_variable_name_is_400(world: ApiWorld) -> None:
    answer = await world.alice.put(f"{ONE}/secrets/1BAD", {"value": SECRET_VALUE})

    assert answer.status == 400
    assert [e.get("name") for e in answer.body["errors"]] == ["secret"]


@pytest.mark.parametrize("value", ["", "12345"])
async def test_a_too_short_secret_is_refused(world: ApiWorld, value: str) -> None:
    answer = await world.alice.put(f"{ONE}/secrets/SHORT", {"value": value})

    assert answer.status in (400, 422), answer.body
    assert pointers(answer) == ["/value"]
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": []}


async def test_a_secret_with_a_nul_is_422(world: ApiWorld) -> None:
    answer = await world.alice.put(f"{ONE}/secrets/NUL", {"value": "abc\u0000defgh"})

    assert answer.status == 422
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": []}


async def test_a_secret_value_never_comes_back_out_of_the_api(
    world: ApiWorld, hello: Remote
) -> None:
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})
    sha = hello.commit(
        {"Makefile": makefile(test="@echo token=$$DEPLOY_TOKEN")},
        message=f"leak {SECRET_VALUE}",
        branch=f"b-{SECRET_VALUE}",
    )
    started = await world.alice.post(
        f"{ONE}/builds", {"job": "test", "ref": f"b-{SECRET_VALUE}", "sha": sha}
    )
    assert started.status == 202, started.body
    await world.fake_github.wait_final(sha)
    build_id = started.body["id"]

    answers: list[Any] = [
        started.body,
        (await world.alice.get("/api/repositories")).body,
        (await world.alice.get(ONE)).body,
        (await world.alice.get(f"{ONE}/env")).body,
        (await world.alice.get(f"{ONE}/secrets")).body,
        (await world.alice.get(f"{ONE}/builds")).body,
        (await world.alice.patch(ONE, {"timeout": 30})).body,
        (await world.alice.get(f"/api/builds/{build_id}")).body,
        (await world.alice.get(f"/api/builds/{build_id}/log")).body,
        (await world.alice.post(f"/api/builds/{build_id}/cancel")).body,
        (await world.alice.get(f"/api/owners/{REPOSITORY.split('/')[0]}/env")).body,
        (await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})).body,
        await world.daemon.page(build_id),
    ]

    assert "token=***" in answers[8]
    for answer in answers:
        assert SECRET_VALUE not in str(answer)
    assert world.fake_github.statuses
    for status in world.fake_github.statuses:
        assert SECRET_VALUE not in status.description


async def test_a_repository_secret_reaches_its_build(world: ApiWorld, hello: Remote) -> None:
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": SECRET_VALUE})
    check = '@test "$$DEPLOY_TOKEN" = "' + SECRET_VALUE + '" && echo same'
    sha = hello.commit({"Makefile": makefile(test=check)})

    started = await world.alice.post(f"{ONE}/builds", {"job": "test", "ref": "main"})

    assert started.body["sha"] == sha
    assert (await world.fake_github.wait_final(sha)).state == "success"
    assert "same" in await world.daemon.log(started.body["id"])
