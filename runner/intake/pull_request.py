"""`pull_request`: opened, synchronize and reopened test the head commit; they never deploy.

Pull requests from forks are not built unless `pull_requests.forks = "without-secrets"`, and then
without secrets; with `"approve"` they are built, without secrets, once a person approved each
new head commit (the build waits until then). https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request
"""

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from runner.core.models import BuildRequest
from runner.core.names import is_branch_name, is_sha
from runner.core.settings import PullRequestSettings
from runner.intake.plan import (
    LaneStop,
    PayloadError,
    Plan,
    ProjectLookup,
    repository_name,
    table,
    text,
    timestamp,
)

router = routing.Router()

BUILT_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


def plan_pull_request(
    payload: Mapping[str, Any], find_project: ProjectLookup, policy: PullRequestSettings
) -> Plan:
    action = payload.get("action")
    closing = action == "closed" and policy.forks == "approve"
    if not isinstance(action, str) or (action not in BUILT_ACTIONS and not closing):
        return Plan.ignore(f"pull_request action {str(action)[:40]!r} is not built")
    repository = repository_name(payload)
    project = find_project(repository)
    if project is None:
        return Plan.ignore(f"repository {repository} is not registered")
    pull = table(payload, "pull_request")
    number = payload.get("number", pull.get("number"))
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**31:
        raise PayloadError("number is not a pull request number")
    if closing:  # its builds that still wait for approval will never be approved
        reason = "Not built: the pull request was closed before anyone approved it"
        ref = f"refs/pull/{number}/head"
        return Plan(stops=(LaneStop(project.repository, ref, None, reason, waiting_only=True),))
    head = table(pull, "head")
    sha, branch = head.get("sha"), head.get("ref")
    if not is_sha(sha):
        raise PayloadError("pull_request.head.sha is not a 40-character commit sha")
    if not is_branch_name(branch):
        raise PayloadError("pull_request.head.ref is not a valid branch name")
    head_repository = text(table(head, "repo"), "full_name")
    # A deleted fork has no head.repo; it is still a fork.
    from_fork = head_repository.lower() != repository.lower()
    if from_fork and policy.forks == "never":
        return Plan.ignore("pull requests from forks are not built (pull_requests.forks)")
    return Plan(
        requests=(
            BuildRequest(
                repository=project.repository,
                sha=sha,
                ref=f"refs/pull/{number}/head",
                branch=branch,
                pull_request=number,
                from_fork=from_fork,
                needs_approval=from_fork and policy.forks == "approve",
                author=text(table(pull, "user"), "login"),
                pushed_at=timestamp(pull.get("updated_at")),
            ),
        )
    )


@router.register("pull_request")
async def on_pull_request(
    event: sansio.Event,
    *,
    plans: list[Plan],
    find_project: ProjectLookup,
    pull_requests: PullRequestSettings,
    **_: Any,
) -> None:
    plans.append(plan_pull_request(event.data, find_project, pull_requests))
