"""`push`: a branch push tests its `after` commit, and deploys it on the deploy branch.

https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
"""

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from runner.core.links import has_skip_marker
from runner.core.models import MERGE_QUEUE_PREFIX, BuildRequest
from runner.core.names import is_branch_name, is_sha
from runner.core.settings import BuildSettings
from runner.intake.plan import (
    PayloadError,
    Plan,
    ProjectLookup,
    default_branch,
    repository_name,
    table,
    text,
    timestamp,
)

router = routing.Router()

_NULL_SHA = "0" * 40


def plan_push(
    payload: Mapping[str, Any], find_project: ProjectLookup, builds: BuildSettings
) -> Plan:
    repository = repository_name(payload)
    project = find_project(repository)
    if project is None:
        return Plan.ignore(f"repository {repository} is not registered")
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise PayloadError("ref is missing")
    after = payload.get("after")
    if payload.get("deleted") is True or after == _NULL_SHA:
        return Plan.ignore("branch or tag deleted")
    if not is_sha(after):
        raise PayloadError("after is not a 40-character commit sha")
    if ref.startswith("refs/heads/"):
        branch, is_tag = ref.removeprefix("refs/heads/"), False
    elif ref.startswith("refs/tags/"):
        if not builds.build_tags:
            return Plan.ignore("tag pushes are not built (builds.build_tags)")
        branch, is_tag = ref.removeprefix("refs/tags/"), True
    else:
        return Plan.ignore(f"{ref} is neither a branch nor a tag")
    if not is_branch_name(branch):
        raise PayloadError("ref is not a valid git reference name")
    if not is_tag and branch.startswith(MERGE_QUEUE_PREFIX):
        return Plan.ignore("a merge queue's branch is built from its merge_group event")

    head_commit = table(payload, "head_commit")
    if is_tag:
        # For an annotated tag `after` is the tag object; statuses belong to its commit.
        commit = head_commit.get("id")
        if not is_sha(commit):
            return Plan.ignore("tag push without a head commit")
        after = commit
    message = text(head_commit, "message")
    if has_skip_marker(message):
        return Plan.ignore("[skip ci] in the head commit message")
    author = text(table(head_commit, "author"), "name") or text(table(payload, "pusher"), "name")
    deploy_branch = project.deploy_branch or default_branch(payload)
    return Plan(
        requests=(
            BuildRequest(
                repository=project.repository,
                sha=after,
                ref=ref,
                branch=branch,
                deploy_after_test=project.deploy_enabled and not is_tag and branch == deploy_branch,
                message=message,
                author=author,
                pushed_at=timestamp(table(payload, "repository").get("pushed_at")),
                before=_moved_from(payload, is_tag),
            ),
        )
    )


def _moved_from(payload: Mapping[str, Any], is_tag: bool) -> str:
    """The branch's head before this push: "" for a new branch, a tag, or no usable sha."""
    before = payload.get("before")
    if is_tag or payload.get("created") is True or not is_sha(before) or before == _NULL_SHA:
        return ""
    return before


@router.register("push")
async def on_push(
    event: sansio.Event,
    *,
    plans: list[Plan],
    find_project: ProjectLookup,
    builds: BuildSettings,
    **_: Any,
) -> None:
    plans.append(plan_push(event.data, find_project, builds))
