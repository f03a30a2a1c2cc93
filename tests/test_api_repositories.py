"""A registered repository's life through the REST API, end to end with real git and make.

Registering (twice, a config project, a token without admin), changing jobs, deploy branch and
timeout and seeing pushes deploy or not and builds time out accordingly, removing it (files,
variables, GitHub hook and webhook gone), losing access (disabled, files deleted, webhook closed,
its builds ended), a clone that fails, and a webhook that only ever builds its own repository.
"""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import TOKEN, DaemonFactory, SettingsFactory
from tests.support.api_world import (
    ALICE_TOKEN,
    REPOSITORY,
    TOKENS,
    ApiWorld,
    eventually,
    start_world,
    wait_for_repository,
)
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.processes import processes_with_marker
from tests.support.webhooks import push_payload
from tests.test_core_loop import wait_for_file

ONE = f"/api/repositories/{REPOSITORY}"
PASSING = makefile(test="@echo testing $$HOBOTNICA_SHA", deploy="@echo deploying $$HOBOTNICA_SHA")


@pytest.fixture
def hello(remote_root: Path) -> Remote:
    return make_remote(remote_root, REPOSITORY)


@pytest.fixture
async def world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    hello.commit({"Makefile": PASSING})
    return await start_world(fake_github, daemon, make_settings())


async def push(world: ApiWorld, registered: dict[str, Any], sha: str, branch: str) -> list[int]:
    status, answer = await world.deliver_to(
        registered["webhook"]["url"],
        registered["webhook"]["secret"],
        push_payload(REPOSITORY, sha, branch=branch),
    )
    assert status == 202, answer
    builds: list[int] = answer["builds"]
    return builds


async def jobs_of(world: ApiWorld, sha: str) -> list[str]:
    listed = await world.alice.get(f"{ONE}/builds", params={"per_page": "100"})
    return sorted(b["job"] for b in listed.body["builds"] if b["sha"] == sha)


# --- registering ----------------------------------------------------------------------------


async def test_registering_twice_is_409(world: ApiWorld) -> None:
    await world.register()

    again = await world.alice.post("/api/repositories", {"owner": "octo-org", "name": "hello"})
    by_carol = await world.carol.post("/api/repositories", {"owner": "Octo-Org", "name": "HELLO"})

    assert again.status == 409
    assert by_carol.status == 409
    assert len(world.fake_github.hooks) == 1


async def test_registering_a_repository_of_the_config_file_is_409(world: ApiWorld) -> None:
    world.fake_github.grant("alice", "octo/app", "ADMIN")  # `octo/app` is in [[projects]]

    answer = await world.alice.post("/api/repositories", {"owner": "octo", "name": "app"})
    shouting = await world.alice.post("/api/repositories", {"owner": "OCTO", "name": "App"})

    assert answer.status == 409
    assert shouting.status == 409
    assert world.fake_github.hooks == {}
    assert (await world.alice.get("/api/repositories")).body == {"repositories": []}


async def test_a_token_without_admin_registers_without_a_hook_and_says_so(
    world: ApiWorld,
) -> None:
    answer = await world.register(by=world.carol)

    webhook = answer.body["webhook"]
    assert webhook["hook_created"] is False
    assert "yourself" in webhook["note"]
    assert webhook["secret"] and webhook["url"] == answer.body["repository"]["webhook_url"]
    assert answer.body["repository"]["hook_id"] is None
    assert answer.body["repository"]["registered_by"] == "carol"
    assert world.fake_github.hooks == {}


async def test_an_admin_token_registers_with_a_hook_github_knows(world: ApiWorld) -> None:
    answer = await world.register()

    (hook_id, hook), *_ = world.fake_github.hooks.items()
    assert answer.body["repository"]["hook_id"] == str(hook_id)
    assert answer.body["webhook"]["hook_created"] is True
    assert hook.secret == answer.body["webhook"]["secret"]
    assert answer.headers["Location"].endswith(ONE)


async def test_the_webhook_secret_is_shown_only_at_registration(world: ApiWorld) -> None:
    answer = await world.register_ready()
    secret = answer.body["webhook"]["secret"]

    shown = [
        await world.alice.get(ONE),
        await world.alice.get("/api/repositories"),
        await world.alice.patch(ONE, {"timeout": 100}),
    ]

    for later in shown:
        assert secret not in str(later.body)


async def test_the_repository_is_shown_as_github_spells_it(world: ApiWorld) -> None:
    await world.register_ready()

    shown = await world.alice.get("/api/repositories/OCTO-ORG/Hello")

    assert shown.status == 200
    assert (shown.body["repository"], shown.body["owner"], shown.body["name"]) == (
        "octo-org/hello",
        "octo-org",
        "hello",
    )
    assert shown.body["default_branch"] == "main"
    assert shown.body["jobs"] == ["test", "deploy"]


# --- jobs, deploy branch, timeout -----------------------------------------------------------


async def test_jobs_test_only_never_deploys_and_adding_deploy_deploys(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    changed = await world.alice.patch(ONE, {"jobs": ["test"]})
    assert changed.body["jobs"] == ["test"]
    first = hello.commit({"Makefile": PASSING}, message="first")

    await push(world, registered, first, "main")

    assert (await world.fake_github.wait_final(first)).state == "success"
    assert await jobs_of(world, first) == ["test"]

    await world.alice.patch(ONE, {"jobs": ["test", "deploy"]})
    second = hello.commit({"Makefile": PASSING}, message="second")
    await push(world, registered, second, "main")

    deployed = await world.fake_github.wait_final(second, "hobotnica/deploy")
    assert deployed.state == "success"
    assert deployed.authorization == f"token {ALICE_TOKEN}"


async def test_turning_deploys_off_stops_a_deploy_already_on_its_way(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    # During an incident: PATCH jobs [test] must also stop the deploy a running test would start.
    registered = (await world.register_ready()).body
    release = tmp_path / "release"
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(release), deploy="@echo deployed")})
    await push(world, registered, sha, "main")
    await world.fake_github.wait_running(sha)

    await world.alice.patch(ONE, {"jobs": ["test"]})
    release.touch()

    assert (await world.fake_github.wait_final(sha)).state == "success"
    deploy = await world.fake_github.wait_final(sha, "hobotnica/deploy")
    assert (deploy.state, deploy.description) == (
        "error",
        "Not deployed: deploys are off for this repository",
    )


async def test_jobs_without_test_is_422(world: ApiWorld) -> None:
    await world.register_ready()

    answer = await world.alice.patch(ONE, {"jobs": ["deploy"]})

    assert answer.status == 422
    assert [e.get("pointer") for e in answer.body["errors"]] == ["/jobs"]
    assert (await world.alice.get(ONE)).body["jobs"] == ["test", "deploy"]


async def test_the_deploy_branch_decides_which_pushes_deploy(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    changed = await world.alice.patch(ONE, {"deploy_branch": "release"})
    assert changed.body["deploy_branch"] == "release"
    on_main = hello.commit({"Makefile": PASSING}, branch="main")
    on_release = hello.commit({"Makefile": PASSING}, branch="release")

    await push(world, registered, on_main, "main")
    await push(world, registered, on_release, "release")

    assert (await world.fake_github.wait_final(on_release, "hobotnica/deploy")).state == "success"
    assert (await world.fake_github.wait_final(on_main)).state == "success"
    assert await jobs_of(world, on_main) == ["test"]


async def test_a_null_deploy_branch_goes_back_to_the_default_branch(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready(deploy_branch="release")).body
    reset = await world.alice.patch(ONE, {"deploy_branch": None})
    assert reset.body["deploy_branch"] is None
    sha = hello.commit({"Makefile": PASSING}, branch="main")

    await push(world, registered, sha, "main")

    assert (await world.fake_github.wait_final(sha, "hobotnica/deploy")).state == "success"


async def test_an_invalid_deploy_branch_is_422(world: ApiWorld) -> None:
    await world.register_ready()

    for branch in ("a..b", "-x", "refs/heads/x.lock", "with space"):
        answer = await world.alice.patch(ONE, {"deploy_branch": branch})
        assert answer.status == 422, branch
        assert [e.get("pointer") for e in answer.body["errors"]] == ["/deploy_branch"]


async def test_the_repository_timeout_ends_its_builds(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    registered = (await world.register_ready()).body
    changed = await world.alice.patch(ONE, {"timeout": 1})
    assert changed.body["timeout"] == 1
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})

    (build_id,) = await push(world, registered, sha, "feature")

    final = await world.fake_github.wait_final(sha)
    assert (final.state, final.description) == ("error", "Timed out after 1 s")
    assert processes_with_marker(f"{world.public_url}/builds/{build_id}") == []


async def test_a_timeout_given_at_registration_is_kept_and_null_resets_it(
    world: ApiWorld,
) -> None:
    registered = await world.register_ready(timeout=120)
    assert registered.body["repository"]["timeout"] == 120

    reset = await world.alice.patch(ONE, {"timeout": None})

    assert reset.body["timeout"] is None


# --- removing -------------------------------------------------------------------------------


async def test_removing_deletes_files_variables_hook_and_webhook(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    await world.alice.put(f"{ONE}/env", {"variables": {"LEVEL": "prod"}})
    await world.alice.put(f"{ONE}/secrets/DEPLOY_TOKEN", {"value": "a-secret-value"})
    sha = hello.commit({"Makefile": PASSING})
    await push(world, registered, sha, "feature")
    await world.fake_github.wait_final(sha)
    mirror = world.data_dir / "mirrors" / "octo-org" / "hello.git"
    workspace = world.data_dir / "workspaces" / "octo-org" / "hello"
    assert mirror.is_dir() and workspace.is_dir()
    assert world.fake_github.hooks

    removed = await world.alice.delete(ONE)

    assert removed.status == 204
    assert not mirror.exists() and not workspace.exists()
    assert world.fake_github.hooks == {}
    assert (await world.alice.get(ONE)).status == 404
    status, _ = await world.deliver_to(
        registered["webhook"]["url"],
        registered["webhook"]["secret"],
        push_payload(REPOSITORY, sha, branch="feature"),
    )
    assert status == 404
    await world.register_ready()
    assert (await world.alice.get(f"{ONE}/env")).body == {"variables": {}}
    assert (await world.alice.get(f"{ONE}/secrets")).body == {"secrets": []}


async def test_removing_twice_is_404(world: ApiWorld) -> None:
    await world.register_ready()

    assert (await world.alice.delete(ONE)).status == 204
    assert (await world.alice.delete(ONE)).status == 404


async def test_removing_stops_a_running_build(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    registered = (await world.register_ready()).body
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    (build_id,) = await push(world, registered, sha, "feature")
    await world.fake_github.wait_running(sha)

    assert (await world.alice.delete(ONE)).status == 204

    build = await world.wait_for_build(build_id, lambda b: b["state"] != "running")
    assert build["state"] == "error"
    url = f"{world.public_url}/builds/{build_id}"
    assert await eventually(lambda: processes_with_marker(url) == [])


async def test_statuses_of_a_removed_repository_never_use_the_daemons_token(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    registered = (await world.register_ready()).body
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    await push(world, registered, sha, "feature")
    await world.fake_github.wait_running(sha)

    await world.alice.delete(ONE)
    await world.daemon.stop()  # its shutdown sends what the outbox holds

    posted = world.fake_github.for_commit(sha)
    assert posted, "GitHub heard that the build runs"
    assert {s.authorization for s in posted} == {f"token {ALICE_TOKEN}"}
    assert posted[-1].state != "pending"


async def test_the_removed_repositorys_final_statuses_survive_a_daemon_change(
    world: ApiWorld, hello: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blue/green: the daemon that posts the last statuses may not be the one that served DELETE.
    registered = (await world.register_ready()).body
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    (build_id,) = await push(world, registered, sha, "feature")
    await world.fake_github.wait_running(sha)
    world.fake_github.scripted = [(502, {})] * 50  # GitHub is down for the first daemon
    monkeypatch.setattr("runner.app.STATUS_FLUSH_TIMEOUT", 0.5)

    assert (await world.alice.delete(ONE)).status == 204
    await world.wait_for_build(build_id, lambda b: b["state"] == "error")
    await world.daemon.stop()  # the final status is still in the outbox
    assert world.fake_github.last_state(sha) == "pending"
    world.fake_github.scripted = []
    await world.daemon.start()  # another daemon, on the same store, with nothing in memory

    final = await world.fake_github.wait_final(sha)
    assert (final.state, final.authorization) == ("error", f"token {ALICE_TOKEN}")


# --- losing access --------------------------------------------------------------------------


async def revocation_world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    hello.commit({"Makefile": PASSING})
    settings = make_settings(builds={"concurrency": 1})
    github = dataclasses.replace(settings.github, access_check_interval=0.2)
    return await start_world(fake_github, daemon, dataclasses.replace(settings, github=github))


async def test_revoked_access_disables_the_repository_and_ends_its_builds(
    fake_github: FakeGitHub,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    hello: Remote,
    tmp_path: Path,
) -> None:
    world = await revocation_world(fake_github, daemon, make_settings, hello)
    registered = (await world.register_ready()).body
    running_sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    (running,) = await push(world, registered, running_sha, "blocker")
    await fake_github.wait_running(running_sha)
    queued_sha = hello.commit({"Makefile": PASSING}, branch="queued")
    (queued,) = await push(world, registered, queued_sha, "queued")

    fake_github.revoke("alice", REPOSITORY)

    shown = await wait_for_repository(world.bob, REPOSITORY, "disabled")  # bob still sees it
    assert shown.body["status"] == "disabled", shown.body
    assert "revoked" in shown.body["status_reason"]
    mirror = world.data_dir / "mirrors" / "octo-org" / "hello.git"
    workspace = world.data_dir / "workspaces" / "octo-org" / "hello"
    # The status changes first, then the files go (the same background step): poll for them.
    assert await eventually(lambda: not mirror.exists() and not workspace.exists())
    ended = await world.wait_for_build(queued, lambda b: b["state"] != "queued")
    assert ended["state"] == "error"
    stopped = await world.wait_for_build(running, lambda b: b["state"] != "running")
    assert stopped["state"] == "error"
    status, _ = await world.deliver_to(
        registered["webhook"]["url"],
        registered["webhook"]["secret"],
        push_payload(REPOSITORY, queued_sha, branch="queued"),
    )
    assert status == 404
    url = f"{world.public_url}/builds/{running}"
    assert await eventually(lambda: processes_with_marker(url) == [])


async def test_statuses_of_a_disabled_repository_never_use_the_daemons_token(
    fake_github: FakeGitHub,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    hello: Remote,
    tmp_path: Path,
) -> None:
    world = await revocation_world(fake_github, daemon, make_settings, hello)
    registered = (await world.register_ready()).body
    running_sha = hello.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    (running,) = await push(world, registered, running_sha, "blocker")
    await fake_github.wait_running(running_sha)

    fake_github.revoke("alice", REPOSITORY)
    await wait_for_repository(world.bob, REPOSITORY, "disabled")
    await world.wait_for_build(running, lambda b: b["state"] != "running")
    await world.daemon.stop()  # its shutdown sends what the outbox holds

    posted = [s for s in fake_github.statuses if s.repository == REPOSITORY]
    assert posted
    assert f"token {TOKEN}" not in {s.authorization for s in posted}


async def test_a_rejected_status_post_rechecks_access_at_once(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    world.fake_github.revoke("alice", REPOSITORY)
    world.fake_github.scripted.append((401, {}))  # alice's token is rejected from now on
    sha = hello.commit({"Makefile": PASSING}, branch="feature")

    await push(world, registered, sha, "feature")

    shown = await wait_for_repository(world.bob, REPOSITORY, "disabled")
    assert shown.body["status"] == "disabled", shown.body


async def test_a_disabled_repository_can_be_registered_again(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    await world.alice.put(f"{ONE}/env", {"variables": {"KEPT": "1"}})
    world.fake_github.revoke("alice", REPOSITORY)
    world.fake_github.scripted.append((401, {}))
    sha = hello.commit({"Makefile": PASSING}, branch="feature")
    await push(world, registered, sha, "feature")
    assert (await wait_for_repository(world.bob, REPOSITORY, "disabled")).status == 200

    again = await world.register_ready(by=world.carol)

    assert again.body["webhook"]["url"] != registered["webhook"]["url"]
    assert (await world.carol.get(f"{ONE}/env")).body == {"variables": {"KEPT": "1"}}


# --- cloning --------------------------------------------------------------------------------


async def test_a_clone_that_fails_says_why_without_the_token(world: ApiWorld) -> None:
    world.fake_github.grant("alice", "octo-org/ghost", "ADMIN")  # on GitHub, but no git remote

    await world.register("octo-org/ghost")

    shown = await wait_for_repository(world.alice, "octo-org/ghost", "clone_failed")
    assert shown.body["status"] == "clone_failed", shown.body
    reason = shown.body["status_reason"]
    assert reason
    for token in (*TOKENS, TOKEN):
        assert token not in reason


# --- its own webhook ------------------------------------------------------------------------


async def test_a_repository_webhook_builds_nothing_for_another_repository(
    world: ApiWorld, remote_root: Path
) -> None:
    registered = (await world.register_ready()).body
    other = make_remote(remote_root, "octo-org/other")
    sha = other.commit({"Makefile": PASSING})

    for repository in ("octo-org/other", "octo/app"):
        status, answer = await world.deliver_to(
            registered["webhook"]["url"],
            registered["webhook"]["secret"],
            push_payload(repository, sha),
        )
        assert status == 202, answer
        assert answer["builds"] == []
    assert world.fake_github.statuses == []


async def test_a_repository_webhook_builds_its_repository_in_any_spelling(
    world: ApiWorld, hello: Remote
) -> None:
    registered = (await world.register_ready()).body
    sha = hello.commit({"Makefile": PASSING}, branch="feature")

    status, answer = await world.deliver_to(
        registered["webhook"]["url"],
        registered["webhook"]["secret"],
        push_payload("Octo-Org/Hello", sha, branch="feature"),
    )

    assert status == 202 and len(answer["builds"]) == 1
    assert (await world.fake_github.wait_final(sha)).state == "success"


async def test_owners_the_operator_did_not_allow_cannot_register(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> None:
    # A registration runs its Makefile on this host: only owners in api.allowed_owners.
    settings = make_settings(api={"allowed_owners": ["someone-else"]})
    world = await start_world(fake_github, daemon, settings)

    answer = await world.alice.post("/api/repositories", {"owner": "octo-org", "name": "hello"})

    assert answer.status == 403
    assert "api.allowed_owners" in answer.body["detail"]
    assert fake_github.hooks == {}


async def test_a_registrant_left_with_read_access_is_disabled(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> None:
    # On a public repository every token can read: the check asks for what registering needed.
    world = await revocation_world(fake_github, daemon, make_settings, hello)
    await world.register_ready()

    fake_github.grant("alice", REPOSITORY, "READ")

    shown = await wait_for_repository(world.bob, REPOSITORY, "disabled")
    assert shown.body["status"] == "disabled", shown.body


async def test_a_git_server_refusing_the_token_disables_a_registration_without_access(
    fake_github: FakeGitHub,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    aiohttp_server: Any,
) -> None:
    # GitHub answers git's fetch with 401 once the token is revoked; that alone must trigger
    # the access check, not wait for the hourly one.
    gate = asyncio.Event()

    async def refuse(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="GitHub"'})

    git_app = web.Application()
    git_app.router.add_route("*", "/{tail:.*}", refuse)
    git_server = await aiohttp_server(git_app)
    settings = make_settings()
    github = dataclasses.replace(settings.github, git_url=str(git_server.make_url("")).rstrip("/"))
    world = await start_world(fake_github, daemon, dataclasses.replace(settings, github=github))
    assert (await world.register()).status == 202

    fake_github.revoke("alice", REPOSITORY)
    gate.set()

    shown = await wait_for_repository(world.bob, REPOSITORY, "disabled")
    assert shown.body["status"] == "disabled", shown.body
