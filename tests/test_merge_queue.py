"""Merge queues: `merge_group` events, shaped like GitHub's own (the octokit example), build the
group's commit on its temporary branch, report on it, never deploy, and stop when destroyed."""

import copy
from typing import Any

import pytest

from runner.core.settings import BuildSettings, Project
from runner.intake.merge_group import plan_merge_group
from runner.intake.plan import LaneStop, PayloadError
from runner.intake.push import plan_push
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import PRINT_MAKES_ENVIRONMENT, Remote, environment_in_log, makefile
from tests.support.webhooks import example, push_payload

QUEUE_BRANCH = "gh-readonly-queue/main/pr-104-929f8209d40f77f4abc622a499c93a83babdbe64"


def merge_group(repository: str, sha: str, action: str = "checks_requested") -> dict[str, Any]:
    payload = copy.deepcopy(example("merge_group-checks_requested"))
    owner, name = repository.split("/")
    payload["repository"].update(full_name=repository, name=name)
    payload["repository"]["owner"]["login"] = owner
    payload["action"] = action
    payload["merge_group"]["head_sha"] = sha
    if action == "destroyed":
        payload["reason"] = "dequeued"
    return payload


def only(repository: str) -> Any:
    project = Project(repository=repository, deploy_branch="main")
    return lambda name: project if name.lower() == repository.lower() else None


def test_checks_requested_tests_the_group_head_and_never_deploys() -> None:
    payload = example("merge_group-checks_requested")

    plan = plan_merge_group(payload, only("octo-org/octo-repo"))

    (request,) = plan.requests
    assert request.sha == "2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d"
    assert request.ref == f"refs/heads/{QUEUE_BRANCH}"
    assert request.branch == QUEUE_BRANCH
    assert request.deploy_after_test is False and request.is_merge_group
    assert plan.stops == ()


def test_destroyed_stops_the_groups_builds_and_other_actions_do_nothing() -> None:
    payload = merge_group("octo-org/octo-repo", "a" * 40, action="destroyed")

    plan = plan_merge_group(payload, only("octo-org/octo-repo"))

    assert plan.requests == ()
    assert plan.stops == (
        LaneStop(
            "octo-org/octo-repo",
            f"refs/heads/{QUEUE_BRANCH}",
            "a" * 40,
            "Stopped: the merge group was dequeued",
        ),
    )
    payload["reason"] = "merged"  # its checks passed: stopping could mark the base's commit
    assert plan_merge_group(payload, only("octo-org/octo-repo")).stops == ()
    payload["action"] = "something_new"
    assert plan_merge_group(payload, only("octo-org/octo-repo")).ignored


def test_a_group_head_ref_outside_the_queue_is_refused() -> None:
    payload = merge_group("octo-org/octo-repo", "a" * 40)
    payload["merge_group"]["head_ref"] = "refs/heads/main"
    with pytest.raises(PayloadError):
        plan_merge_group(payload, only("octo-org/octo-repo"))


def test_the_push_of_the_queues_branch_is_not_built_twice() -> None:
    payload = push_payload("octo/app", "b" * 40, branch=QUEUE_BRANCH)

    plan = plan_push(payload, only("octo/app"), BuildSettings())

    assert plan.requests == () and "merge_group" in (plan.ignored or "")


async def test_a_merge_group_is_built_and_reported_and_never_deployed(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    recipe = makefile(test=PRINT_MAKES_ENVIRONMENT, deploy="@echo must not deploy")
    sha = remote.commit({"Makefile": recipe}, branch=QUEUE_BRANCH)
    d = await daemon(make_settings(projects=[{"repository": "octo/app", "deploy_branch": "main"}]))

    status, answer = await d.deliver("merge_group", merge_group("octo/app", sha))
    pushed, pushed_answer = await d.deliver(
        "push", push_payload("octo/app", sha, branch=QUEUE_BRANCH)
    )

    assert status == 202 and len(answer["builds"]) == 1
    assert (pushed, pushed_answer["builds"]) == (202, [])
    assert (await fake_github.wait_final(sha)).state == "success"
    environment = environment_in_log(await d.log(answer["builds"][0]))
    assert environment["HOBOTNICA_MERGE_GROUP"] == "1"
    assert environment["HOBOTNICA_BRANCH"] == QUEUE_BRANCH
    assert environment["HOBOTNICA_REF"] == f"refs/heads/{QUEUE_BRANCH}"
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []
    await d.stop()


async def test_a_destroyed_merge_group_stops_its_build(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@sleep 300")}, branch=QUEUE_BRANCH)
    d = await daemon(make_settings())
    await d.deliver("merge_group", merge_group("octo/app", sha))
    await fake_github.wait_running(sha)

    status, answer = await d.deliver("merge_group", merge_group("octo/app", sha, "destroyed"))

    assert status == 202 and answer["builds"] == []
    final = await fake_github.wait_final(sha)
    assert final.state == "error"
    assert final.description.startswith("Stopped: the merge group was dequeued")
    await d.stop()
