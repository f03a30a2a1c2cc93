"""`merge_group`: a merge queue asks for checks on the commit it would merge.

`checks_requested` tests `merge_group.head_sha` on its temporary `gh-readonly-queue/...` branch
and never deploys (the deploy follows the push to the base branch once the queue merged it);
`destroyed` (merged, or the group was dismissed) stops that build. The push GitHub also sends for
the temporary branch is not built again (`runner.intake.push`).
https://docs.github.com/en/webhooks/webhook-events-and-payloads#merge_group
"""

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from runner.core.models import MERGE_QUEUE_PREFIX, BuildRequest
from runner.core.names import is_branch_name, is_sha
from runner.intake.plan import (
    LaneStop,
    PayloadError,
    Plan,
    ProjectLookup,
    repository_name,
    table,
    text,
)

router = routing.Router()


def plan_merge_group(payload: Mapping[str, Any], find_project: ProjectLookup) -> Plan:
    action = payload.get("action")
    if action not in ("checks_requested", "destroyed"):
        return Plan.ignore(f"merge_group action {str(action)[:40]!r} is not acted on")
    repository = repository_name(payload)
    project = find_project(repository)
    if project is None:
        return Plan.ignore(f"repository {repository} is not registered")
    group = table(payload, "merge_group")
    ref = group.get("head_ref")
    branch = ref.removeprefix("refs/heads/") if isinstance(ref, str) else None
    if not isinstance(ref, str) or not ref.startswith("refs/heads/") or not is_branch_name(branch):
        raise PayloadError("merge_group.head_ref is not a branch reference")
    if not branch.startswith(MERGE_QUEUE_PREFIX):
        raise PayloadError(f"merge_group.head_ref is not a {MERGE_QUEUE_PREFIX} branch")
    sha = group.get("head_sha")
    if not is_sha(sha):
        raise PayloadError("merge_group.head_sha is not a 40-character commit sha")
    if action == "destroyed":
        reason = text(payload, "reason") or "destroyed"
        if reason == "merged":
            # Its checks passed; stopping now could post `error` on the commit the base branch
            # points to.
            return Plan.ignore("the merge group was merged")
        stop = LaneStop(project.repository, ref, sha, f"Stopped: the merge group was {reason}")
        return Plan(stops=(stop,))
    head_commit = table(group, "head_commit")
    return Plan(
        requests=(
            BuildRequest(
                repository=project.repository,
                sha=sha,
                ref=ref,
                branch=branch,
                deploy_after_test=False,
                message=text(head_commit, "message"),
                author=text(table(head_commit, "author"), "name")
                or text(table(payload, "sender"), "login"),
            ),
        )
    )


@router.register("merge_group")
async def on_merge_group(
    event: sansio.Event, *, plans: list[Plan], find_project: ProjectLookup, **_: Any
) -> None:
    plans.append(plan_merge_group(event.data, find_project))
