"""The event routers, composed once, and the pure entry point intake calls."""

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from runner.core.settings import Settings
from runner.intake import merge_group, pull_request, push, rerequested
from runner.intake.plan import Plan, ProjectLookup

router = routing.Router(push.router, pull_request.router, merge_group.router, rerequested.router)


async def plan_event(
    event: str,
    payload: Mapping[str, Any],
    delivery_id: str,
    *,
    find_project: ProjectLookup,
    settings: Settings,
) -> Plan:
    plans: list[Plan] = []
    await router.dispatch(
        sansio.Event(payload, event=event, delivery_id=delivery_id),
        plans=plans,
        find_project=find_project,
        builds=settings.builds,
        pull_requests=settings.pull_requests,
        github=settings.github,
    )
    if not plans:
        return Plan.ignore(f"{event} events are not acted on")
    acting = [plan for plan in plans if plan.acts]
    if acting:
        return Plan(
            requests=tuple(request for plan in acting for request in plan.requests),
            stops=tuple(stop for plan in acting for stop in plan.stops),
            reruns=tuple(rerun for plan in acting for rerun in plan.reruns),
            rerun_commits=tuple(commit for plan in acting for commit in plan.rerun_commits),
            asked_by=next((plan.asked_by for plan in acting if plan.asked_by), ""),
        )
    return Plan.ignore("; ".join(plan.ignored or "" for plan in plans))
