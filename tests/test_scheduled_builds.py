"""Scheduled builds in the daemon: a project's `schedule` tests its branch's head at its times,
without a webhook. The clock is the test's (`ScheduledBuilds.clock`); git, make, the store and
the daemons are real."""

import asyncio
import time
from pathlib import Path

from runner.app import SCHEDULED_BUILDS, STORE
from runner.scheduling.schedules import next_slot
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api_world import REPOSITORY, start_world
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.webhooks import push_payload
from tests.test_core_loop import wait_for_file

NIGHTLY = "0 3 * * *"
DAY = 24 * 3600
RECIPE = makefile(
    test="@echo trigger=$$HOBOTNICA_TRIGGER branch=$$HOBOTNICA_BRANCH",
    deploy="@echo never deployed",
)
PROJECT = {"repository": "octo/app", "schedule": NIGHTLY, "schedule_branch": "main"}


async def scheduled_builds(d: object) -> list[tuple[int, str, str]]:
    """(id, sha, state) of the daemon's scheduled builds, oldest first."""
    store = d.client.app[STORE]  # type: ignore[attr-defined]
    found = await store.list_builds("octo/app", limit=100)
    return sorted((b.id, b.sha, b.state.value) for b in found if b.request.scheduled)


async def test_a_schedule_tests_the_branch_head_at_its_time_and_once_after_downtime(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    first = remote.commit({"Makefile": RECIPE}, branch="main")
    d = await daemon(make_settings([PROJECT]))
    schedule = d.client.app[SCHEDULED_BUILDS]
    slot = next_slot(NIGHTLY, "UTC", time.time())

    schedule.clock = lambda: slot - 1  # a second early: nothing
    assert await schedule.run_once() == []
    schedule.clock = lambda: slot + 1
    await schedule.run_once()
    await fake_github.wait_final(first)
    [(build_id, sha, state)] = await scheduled_builds(d)
    assert (sha, state) == (first, "success")
    assert "trigger=schedule branch=main" in await d.log(build_id)
    shown = await d.build(build_id)
    assert (shown["trigger"], shown["job"], shown["deploys_after_test"]) == (
        "schedule",
        "test",
        False,
    )
    assert 'id="scheduled"' in await d.page(build_id)
    assert await schedule.run_once() == []  # that slot is built

    # Down for three nights; the branch moved meanwhile. At start: one build, of the head now.
    await d.stop()
    second = remote.commit({"Makefile": RECIPE + "\n"}, branch="main")
    await d.start()
    schedule = d.client.app[SCHEDULED_BUILDS]
    schedule.clock = lambda: slot + 3 * DAY + 3600
    await schedule.run_once()
    await schedule.run_once()
    await fake_github.wait_final(second)
    assert [sha for _, sha, _ in await scheduled_builds(d)] == [first, second]
    assert fake_github.for_commit(second, "hobotnica/deploy") == []  # never deploys
    await d.stop()


async def test_two_daemons_on_one_data_directory_build_a_slot_once(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    sha = remote.commit({"Makefile": RECIPE}, branch="main")
    settings = make_settings([PROJECT])
    blue, green = await daemon(settings), await daemon(settings)
    slot = next_slot(NIGHTLY, "UTC", time.time())
    schedules = [d.client.app[SCHEDULED_BUILDS] for d in (blue, green)]
    for schedule in schedules:
        schedule.clock = lambda: slot + 1

    await asyncio.gather(*(schedule.run_once() for schedule in schedules))
    await asyncio.gather(*(schedule.run_once() for schedule in schedules))

    await fake_github.wait_final(sha)
    assert [found for _, found, _ in await scheduled_builds(blue)] == [sha]
    await blue.stop()
    await green.stop()


async def test_a_registered_repositorys_schedule_is_set_through_the_api(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
) -> None:
    hello = make_remote(remote_root, REPOSITORY)
    sha = hello.commit({"Makefile": RECIPE})
    world = await start_world(fake_github, daemon, make_settings())
    await world.register_ready()
    one = f"/api/repositories/{REPOSITORY}"

    refused = await world.carol.patch(one, {"schedule": "0 25 * * *"})
    assert (refused.status, [e["pointer"] for e in refused.body["errors"]]) == (422, ["/schedule"])
    refused = await world.carol.patch(one, {"schedule_timezone": "Mars/Olympus"})
    assert refused.status == 422
    changed = await world.carol.patch(
        one, {"schedule": NIGHTLY, "schedule_timezone": "Europe/Ljubljana"}
    )
    assert changed.status == 200, changed.body
    shown = changed.body
    assert (shown["schedule"], shown["schedule_timezone"], shown["schedule_branch"]) == (
        NIGHTLY,
        "Europe/Ljubljana",
        None,  # the repository's default branch
    )

    assert world.daemon.client is not None
    schedule = world.daemon.client.app[SCHEDULED_BUILDS]
    slot = next_slot(NIGHTLY, "Europe/Ljubljana", time.time())
    schedule.clock = lambda: slot + 1
    await schedule.run_once()
    await fake_github.wait_final(sha)
    builds = (await world.carol.get(f"{one}/builds")).body["builds"]
    assert [(b["trigger"], b["sha"], b["branch"]) for b in builds] == [("schedule", sha, "main")]

    unset = await world.carol.patch(one, {"schedule": None})
    assert unset.body["schedule"] is None
    schedule.clock = lambda: slot + DAY + 1  # the next night: no schedule, no build
    assert await schedule.run_once() == []


async def test_a_slot_that_comes_while_a_push_is_built_leaves_the_push_and_its_deploy_alone(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    recipe = makefile(test=wait_for_file(release), deploy="@echo deployed")
    sha = remote.commit({"Makefile": recipe}, branch="main")
    d = await daemon(make_settings([{**PROJECT, "deploy_branch": "main"}]))
    await d.deliver("push", push_payload("octo/app", sha))
    await fake_github.wait_running(sha)
    schedule = d.client.app[SCHEDULED_BUILDS]
    slot = next_slot(NIGHTLY, "UTC", time.time())
    schedule.clock = lambda: slot + 1

    assert await schedule.run_once() == []  # the branch is being built already
    release.touch()
    assert (await fake_github.wait_final(sha, "hobotnica/deploy")).state == "success"
    assert await scheduled_builds(d) == []
    assert await schedule.run_once() == []  # and that slot is done with
    await d.stop()
