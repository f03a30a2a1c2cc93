"""`check_run` and `check_suite` with action `rerequested`: GitHub's "Re-run" and "Re-run all
checks" buttons on Hobotnica's check runs (`[github] report = "checks"`).

Only runs the App made are acted on (`app.id` is the App's): a repository webhook also receives
other Apps' check runs, whose `external_id` means nothing here. A check run's `external_id` is
the build it reports; a suite names its commit, whose latest build runs again. GitHub shows the
buttons only to people with write access to the repository.
https://docs.github.com/en/webhooks/webhook-events-and-payloads#check_run
"""

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from runner.core.names import is_sha, is_user_name
from runner.core.settings import GitHubSettings
from runner.intake.plan import Plan, ProjectLookup, repository_name, table

router = routing.Router()

CONTEXTS = ("hobotnica/test", "hobotnica/deploy")


def plan_rerequested(
    event: str, payload: Mapping[str, Any], find_project: ProjectLookup, github: GitHubSettings
) -> Plan:
    if payload.get("action") != "rerequested":
        return Plan.ignore(f"{event} action {str(payload.get('action'))[:40]!r} is not acted on")
    subject = table(payload, event)
    app_id = table(subject, "app").get("id")
    if github.app_id is None or app_id != github.app_id:
        return Plan.ignore(f"the {event} is not this App's")
    repository = repository_name(payload)
    project = find_project(repository)
    if project is None:
        return Plan.ignore(f"repository {repository} is not registered")
    if event == "check_run":
        external_id = subject.get("external_id")
        if subject.get("name") not in CONTEXTS or not isinstance(external_id, str):
            return Plan.ignore("not a Hobotnica check run")
        if not external_id.isascii() or not external_id.isdigit() or len(external_id) > 18:
            return Plan.ignore("its external_id names no build")
        return Plan(reruns=((project.repository, int(external_id)),), asked_by=_sender(payload))
    sha = subject.get("head_sha")
    if not is_sha(sha):
        return Plan.ignore("check_suite.head_sha is not a commit sha")
    return Plan(rerun_commits=((project.repository, sha),), asked_by=_sender(payload))


def _sender(payload: Mapping[str, Any]) -> str:
    """Who pressed the button (GitHub's login), or "" when the payload says nothing usable."""
    login = table(payload, "sender").get("login")
    return login if is_user_name(login) else ""


@router.register("check_run", action="rerequested")
@router.register("check_suite", action="rerequested")
async def on_rerequested(
    event: sansio.Event,
    *,
    plans: list[Plan],
    find_project: ProjectLookup,
    github: GitHubSettings,
    **_: Any,
) -> None:
    plans.append(plan_rerequested(event.event, event.data, find_project, github))
