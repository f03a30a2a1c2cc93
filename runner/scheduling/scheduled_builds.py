"""Scheduled builds: each project with a `schedule` (configured, or registered through the API)
tests its branch's head at the times it names (`runner.scheduling.schedules` says which slot is
due), without a webhook.

Every node looks every `POLL` seconds. A due slot is queued as a delivery whose id names the
slot, then marked built in the store: two nodes that see the same slot at once queue it once
(the second delivery is a duplicate), and a node that stops between the two steps queues it
once more only as a duplicate. A scheduled build only tests: it never deploys.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from runner.core.errors import CheckoutError, StoreUnavailable
from runner.core.git import Repositories
from runner.core.models import BuildRequest
from runner.core.settings import Settings
from runner.scheduling.schedules import due_slot
from runner.store import Delivery, DeliveryOutcome, Store
from runner.store.projects import ProjectDirectory

log = structlog.get_logger(logger_name="hobotnica.schedule")

POLL = 15.0  # how late a slot may build
BRANCH_FETCH_TIMEOUT = 60.0

DefaultBranch = Callable[[str], Awaitable[str | None]]
QueueBuilds = Callable[[Delivery], Awaitable[DeliveryOutcome]]


@dataclass(frozen=True)
class Scheduled:
    """A repository's schedule: a configured project's or a registration's."""

    repository: str
    expression: str
    zone: str
    branch: str | None


class ScheduledBuilds:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        projects: ProjectDirectory,
        repositories: Repositories,
        default_branch: DefaultBranch,
        queue_builds: QueueBuilds,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._projects = projects
        self._repositories = repositories
        self._default_branch = default_branch
        self._queue_builds = queue_builds
        self.clock = clock  # the tests move it

    async def run_once(self) -> list[int]:
        """Queue the builds whose slot has come; their ids."""
        scheduled = [
            Scheduled(p.repository, p.schedule, p.schedule_timezone, p.schedule_branch)
            for p in self._settings.projects
            if p.schedule is not None
        ]
        for registered in await self._store.registrations():
            if registered.schedule is not None and registered.status != "disabled":
                scheduled.append(
                    Scheduled(
                        registered.repository,
                        registered.schedule,
                        registered.schedule_timezone,
                        registered.schedule_branch,
                    )
                )
        queued: list[int] = []
        for schedule in scheduled:
            try:
                queued += await self._build_if_due(schedule)
            except (StoreUnavailable, OSError, CheckoutError) as error:  # the others go on
                log.warning("a schedule is looked at again later", error=str(error))
        return queued

    async def _build_if_due(self, schedule: "Scheduled") -> list[int]:
        repository, expression, zone = schedule.repository, schedule.expression, schedule.zone
        record = await self._store.schedule_seen(repository, f"{expression} {zone}")
        now = self.clock()
        slot = due_slot(expression, zone, since=record.since, built=record.built_slot, now=now)
        if slot is None:
            return []
        project = await self._projects.resolve(repository)
        if project is None:  # removed meanwhile
            return []
        branch = schedule.branch or await self._default_branch(repository)
        if branch is None:
            log.warning(
                "a scheduled build waits: the repository's default branch is not known yet"
                " (set schedule_branch, or push once)",
                repository=repository,
            )
            return []
        try:
            async with asyncio.timeout(BRANCH_FETCH_TIMEOUT):
                head = await self._repositories.branch_head(
                    repository, branch, self._projects.clone_url(project), project.token
                )
        except TimeoutError:
            head = None
        if head is None:  # tried again on the next look, until the next slot replaces it
            log.warning("a scheduled build waits: its branch cannot be fetched", branch=branch)
            return []
        if await self._on_its_way(repository, branch):
            # A push's build of the branch waits or runs: it is tested anyway, and a scheduled
            # build would supersede it (and the deploy it may lead to).
            log.info("a scheduled build is not needed: the branch is being built", branch=branch)
            await self._store.schedule_built(repository, slot)
            return []
        message, author = await self._repositories.commit_info(repository, head)
        request = BuildRequest(
            repository=repository,
            sha=head,
            ref=f"refs/heads/{branch}",
            branch=branch,
            message=message,
            author=author,
            scheduled=True,
        )
        outcome = await self._queue_builds(
            Delivery(
                id=f"schedule-{int(slot)}-{repository.lower()}",
                event="schedule",
                hook_id=None,
                received_at=now,
                outcome=f"accepted: scheduled {expression} ({zone})",
                requests=(request,),
            )
        )
        await self._store.schedule_built(repository, slot)
        if not outcome.duplicate:
            log.info(
                "scheduled build", repository=repository, branch=branch, builds=outcome.build_ids
            )
        return list(outcome.build_ids)

    async def _on_its_way(self, repository: str, branch: str) -> bool:
        for state in ("queued", "running"):
            if await self._store.list_builds(repository, branch=branch, state=state, limit=1):
                return True
        return False
