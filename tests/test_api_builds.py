"""Builds through the REST API: listing (pages, `next`, filters), starting by hand (a branch head,
a given commit, a deploy only from the deploy branch), and cancelling (queued, running,
finished), with real git and make and the statuses GitHub (the fake) is sent.
"""

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api_world import (
    REPOSITORY,
    ApiWorld,
    eventually,
    start_world,
)
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.processes import processes_with_marker
from tests.test_core_loop import wait_for_file

ONE = f"/api/repositories/{REPOSITORY}"
PASSING = makefile(test="@echo testing $$HOBOTNICA_SHA", deploy="@echo deploying $$HOBOTNICA_SHA")
FAILING = makefile(test="@exit 3")


@pytest.fixture
def hello(remote_root: Path) -> Remote:
    return make_remote(remote_root, REPOSITORY)


@pytest.fixture
async def world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    hello.commit({"Makefile": PASSING})
    world = await start_world(fake_github, daemon, make_settings(builds={"concurrency": 1}))
    await world.register_ready()
    return world


async def start(world: ApiWorld, **body: Any) -> dict[str, Any]:
    answer = await world.carol.post(f"{ONE}/builds", {"job": "test", **body})
    assert answer.status == 202, answer.body
    started: dict[str, Any] = answer.body
    return started


async def finished(world: ApiWorld, build_id: int) -> dict[str, Any]:
    return await world.wait_for_build(build_id, lambda b: b["state"] not in ("queued", "running"))


# --- listing --------------------------------------------------------------------------------


@pytest.fixture
async def history(world: ApiWorld, hello: Remote) -> dict[str, list[int]]:
    """Five finished builds, oldest first: main ✓, broken ✗, main ✓, broken ✗, main ✓."""
    hello.commit({"Makefile": FAILING}, branch="broken")
    ids: dict[str, list[int]] = {"main": [], "broken": []}
    for branch in ("main", "broken", "main", "broken", "main"):
        build = await start(world, ref=branch)
        assert (await finished(world, build["id"]))["state"] in ("success", "failure")
        ids[branch].append(build["id"])
    return ids


async def follow(world: ApiWorld, params: dict[str, str]) -> tuple[list[int], int]:
    """Every id the listing gives, following `next`; and how many pages it took."""
    seen: list[int] = []
    pages = 0
    answer = await world.bob.get(f"{ONE}/builds", params=params)
    while True:
        assert answer.status == 200, answer.body
        pages += 1
        seen += [b["id"] for b in answer.body["builds"]]
        following = answer.body["next"]
        if following is None or pages > 20:
            return seen, pages
        assert following.startswith(f"{world.public_url}/api/repositories/{REPOSITORY}/builds?")
        path, _, query = following.removeprefix(world.public_url).partition("?")
        answer = await world.bob.get(
            path, params=dict(part.split("=", 1) for part in query.split("&"))
        )


async def test_builds_are_listed_newest_first_in_pages(
    world: ApiWorld, history: dict[str, list[int]]
) -> None:
    every = sorted(history["main"] + history["broken"], reverse=True)

    seen, pages = await follow(world, {"per_page": "2"})

    assert seen == every
    assert pages == 3


async def test_one_page_holding_everything_has_no_next(
    world: ApiWorld, history: dict[str, list[int]]
) -> None:
    answer = await world.bob.get(f"{ONE}/builds", params={"per_page": "5"})

    assert len(answer.body["builds"]) == 5
    assert answer.body["next"] is None


async def test_the_branch_filter_lists_one_branch_and_survives_paging(
    world: ApiWorld, history: dict[str, list[int]]
) -> None:
    seen, _ = await follow(world, {"branch": "main", "per_page": "1"})

    assert seen == sorted(history["main"], reverse=True)


async def test_the_state_filter_lists_one_state_and_survives_paging(
    world: ApiWorld, history: dict[str, list[int]]
) -> None:
    failed, _ = await follow(world, {"state": "failure", "per_page": "1"})
    passed, _ = await follow(world, {"state": "success", "branch": "main"})
    running, _ = await follow(world, {"state": "running"})

    assert failed == sorted(history["broken"], reverse=True)
    assert passed == sorted(history["main"], reverse=True)
    assert running == []


async def test_a_listing_out_of_range_is_400(world: ApiWorld) -> None:
    for params in ({"per_page": "0"}, {"per_page": "101"}, {"state": "done"}, {"before": "0"}):
        answer = await world.bob.get(f"{ONE}/builds", params=params)
        assert answer.status == 400, params


# --- starting -------------------------------------------------------------------------------


async def test_starting_a_branch_builds_its_head(world: ApiWorld, hello: Remote) -> None:
    head = hello.commit({"Makefile": PASSING}, branch="feature")

    build = await start(world, ref="feature")

    assert (build["sha"], build["branch"], build["ref"]) == (head, "feature", "refs/heads/feature")
    assert build["state"] == "queued"
    assert build["url"] == f"{world.public_url}/builds/{build['id']}"
    assert build["node"] is None  # nobody ran it yet
    final = await world.fake_github.wait_final(head)
    assert final.state == "success"
    assert final.target_url == build["url"]
    ran = await finished(world, build["id"])
    assert ran["node"] == world.settings.server.node  # host:port, as no node_name is set


async def test_a_node_without_the_mirror_yet_starts_a_branch_all_the_same(
    world: ApiWorld, hello: Remote
) -> None:
    # Several nodes: another node cloned the registration; this one has no mirror of it yet.
    head = hello.commit({"Makefile": PASSING}, branch="feature")
    shutil.rmtree(world.data_dir / "mirrors")

    build = await start(world, ref="feature")

    assert build["sha"] == head
    assert (await world.fake_github.wait_final(head)).state == "success"


async def test_starting_a_sha_and_ref_builds_that_commit(world: ApiWorld, hello: Remote) -> None:
    older = hello.commit({"Makefile": PASSING}, message="older")
    hello.commit({"Makefile": PASSING}, message="newer")

    build = await start(world, sha=older, ref="main")

    assert build["sha"] == older
    assert (await world.fake_github.wait_final(older)).state == "success"
    assert f"testing {older}" in await world.daemon.log(build["id"])


async def test_a_sha_alone_rebuilds_it_as_the_branch_it_was_built_as(
    world: ApiWorld, hello: Remote
) -> None:
    sha = hello.commit({"Makefile": PASSING}, branch="feature")
    first = await start(world, ref="feature")
    await finished(world, first["id"])

    again = await start(world, sha=sha)

    assert (again["sha"], again["branch"]) == (sha, "feature")
    assert again["id"] != first["id"]
    assert (await finished(world, again["id"]))["state"] == "success"


async def test_a_commit_that_is_not_on_the_branch_is_422(world: ApiWorld, hello: Remote) -> None:
    # Write access must not build (or deploy) a commit as a branch it was never pushed to.
    elsewhere = hello.commit({"Makefile": PASSING}, branch="unreviewed")

    answer = await world.carol.post(
        f"{ONE}/builds", {"job": "test", "ref": "main", "sha": elsewhere}
    )

    assert answer.status == 422
    assert [e["pointer"] for e in answer.body["errors"]] == ["/sha"]


async def test_a_deploy_builds_only_the_deploy_branchs_head(world: ApiWorld, hello: Remote) -> None:
    older = hello.commit({"Makefile": PASSING}, message="older")
    hello.commit({"Makefile": PASSING}, message="newer")

    answer = await world.carol.post(f"{ONE}/builds", {"job": "deploy", "ref": "main", "sha": older})

    assert answer.status == 422  # an older commit: deploys never go backwards
    assert [e["pointer"] for e in answer.body["errors"]] == ["/sha"]


async def test_a_deploy_needs_its_branch(world: ApiWorld, hello: Remote) -> None:
    sha = hello.commit({"Makefile": PASSING})
    await finished(world, (await start(world, ref="main"))["id"])

    answer = await world.carol.post(f"{ONE}/builds", {"job": "deploy", "sha": sha})

    assert answer.status == 422


async def test_a_sha_never_built_here_alone_is_422(world: ApiWorld) -> None:
    answer = await world.carol.post(f"{ONE}/builds", {"job": "test", "sha": "a" * 40})

    assert answer.status == 422


async def test_neither_ref_nor_sha_is_422(world: ApiWorld) -> None:
    answer = await world.carol.post(f"{ONE}/builds", {"job": "test"})

    assert answer.status == 422


async def test_an_unknown_branch_is_422(world: ApiWorld) -> None:
    answer = await world.carol.post(f"{ONE}/builds", {"job": "test", "ref": "no-such-branch"})

    assert answer.status == 422
    assert [e["pointer"] for e in answer.body["errors"]] == ["/ref"]


async def test_an_invalid_branch_name_is_422(world: ApiWorld) -> None:
    for ref in ("a..b", "-rf", "x.lock", "has space"):
        answer = await world.carol.post(f"{ONE}/builds", {"job": "test", "ref": ref})
        assert answer.status == 422, ref


async def test_a_deploy_of_another_branch_than_the_deploy_branch_is_422(
    world: ApiWorld, hello: Remote
) -> None:
    hello.commit({"Makefile": PASSING}, branch="feature")

    answer = await world.carol.post(f"{ONE}/builds", {"job": "deploy", "ref": "feature"})

    assert answer.status == 422
    assert [e["pointer"] for e in answer.body["errors"]] == ["/job"]


async def test_a_deploy_of_the_deploy_branch_tests_then_deploys(
    world: ApiWorld, hello: Remote
) -> None:
    sha = hello.commit({"Makefile": PASSING}, branch="main")

    answer = await world.carol.post(f"{ONE}/builds", {"job": "deploy", "ref": "main"})

    assert answer.status == 202
    assert answer.body["job"] == "test"  # the tests first; the deploy follows green tests
    assert answer.body["deploys_after_test"] is True  # and the answer says a deploy follows
    assert answer.body["asked_by"] == "carol"  # who started it, on its page and here
    deployed = await world.fake_github.wait_final(sha, "hobotnica/deploy")
    assert deployed.state == "success"
    tested = await finished(world, answer.body["id"])
    [deploy_id] = tested["deploy_build_ids"]
    deploy = await world.build(deploy_id)
    assert (deploy["job"], deploy["sha"], deploy["test_build_id"]) == ("deploy", sha, tested["id"])
    assert deploy["deploys_after_test"] is False
    assert deployed.target_url == deploy["url"]


async def test_without_a_job_the_readmes_example_tests_the_branch_and_never_deploys(
    world: ApiWorld, hello: Remote
) -> None:
    # README: `{"ref": "main"}` builds the branch's head. `main` is the deploy branch here, so
    # only the missing `job` (a test, by default) keeps this from deploying.
    sha = hello.commit({"Makefile": PASSING}, branch="main")

    answer = await world.carol.post(f"{ONE}/builds", {"ref": "main"})

    assert answer.status == 202, answer.body
    assert answer.headers["Location"] == answer.body["url"]
    assert (answer.body["job"], answer.body["sha"], answer.body["branch"]) == ("test", sha, "main")
    assert answer.body["deploys_after_test"] is False
    tested = await finished(world, answer.body["id"])
    assert tested["state"] == "success"
    # A deploy would have been queued as the tests ended, in the same transaction.
    assert tested["deploy_build_ids"] == []
    listed = await world.bob.get(f"{ONE}/builds")
    assert [(b["id"], b["job"]) for b in listed.body["builds"]] == [(tested["id"], "test")]
    assert [b["deploys_after_test"] for b in listed.body["builds"]] == [False]


async def test_a_deploy_is_422_when_the_repository_does_not_deploy(
    world: ApiWorld,
) -> None:
    await world.alice.patch(ONE, {"jobs": ["test"]})

    answer = await world.carol.post(f"{ONE}/builds", {"job": "deploy", "ref": "main"})

    assert answer.status == 422


# --- cancelling -----------------------------------------------------------------------------


async def blocked(world: ApiWorld, hello: Remote, release: Path) -> dict[str, Any]:
    """A running build that holds the only build slot until `release` exists."""
    sha = hello.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="blocker")
    build = await start(world, ref="blocker")
    await world.fake_github.wait_running(sha)
    return build


async def test_cancelling_a_queued_build_ends_it_and_github_hears_only_if_it_heard_of_it(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    blocker = await blocked(world, hello, release)
    sha = hello.commit({"Makefile": PASSING}, branch="feature")
    queued = await start(world, ref="feature")

    cancelled = await world.carol.post(f"/api/builds/{queued['id']}/cancel")

    assert cancelled.status == 202
    assert (cancelled.body["state"], cancelled.body["description"]) == (
        "error",
        "Cancelled by carol",
    )
    release.touch()
    await finished(world, blocker["id"])
    await world.daemon.stop()  # its shutdown sends what the outbox holds
    posted = [(s.state, s.description) for s in world.fake_github.for_commit(sha)]
    assert posted == [] or posted[-1] == ("error", "Cancelled by carol"), posted


async def test_cancelling_a_queued_build_github_heard_of_tells_github(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await blocked(world, hello, release)
    sha = hello.commit({"Makefile": PASSING}, branch="feature")
    queued = await start(world, ref="feature")
    await world.fake_github.wait_until(lambda: bool(world.fake_github.for_commit(sha)))

    cancelled = await world.carol.post(f"/api/builds/{queued['id']}/cancel")

    assert cancelled.status == 202
    final = await world.fake_github.wait_final(sha)
    assert (final.state, final.description) == ("error", "Cancelled by carol")
    release.touch()


async def test_cancelling_a_running_build_ends_its_processes(
    world: ApiWorld, hello: Remote, tmp_path: Path
) -> None:
    build = await blocked(world, hello, tmp_path / "never-created")
    url = f"{world.public_url}/builds/{build['id']}"
    assert processes_with_marker(url)

    cancelled = await world.alice.post(f"/api/builds/{build['id']}/cancel")

    assert cancelled.status == 202
    final = await world.fake_github.wait_final(build["sha"])
    assert (final.state, final.description) == ("error", "Cancelled by alice")
    assert (await finished(world, build["id"]))["state"] == "error"
    assert await eventually(lambda: processes_with_marker(url) == [])


async def test_cancelling_a_finished_build_is_409(world: ApiWorld) -> None:
    build = await start(world, ref="main")
    done = await finished(world, build["id"])

    answer = await world.carol.post(f"/api/builds/{build['id']}/cancel")

    assert answer.status == 409
    assert (await world.build(build["id"]))["state"] == done["state"] == "success"


async def test_cancelling_a_build_that_does_not_exist_is_404(world: ApiWorld) -> None:
    answer = await world.carol.post("/api/builds/999999/cancel")

    assert answer.status == 404
