"""What the API's handlers share: the daemon's parts, and how a repository is shown."""

import datetime
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runner.api.auth import Authenticator
from runner.api.middleware import VALIDATED
from runner.api.problems import ProblemError, not_found
from runner.api.validated import Validated
from runner.core.git import Repositories
from runner.core.models import Build
from runner.core.names import is_repository_name
from runner.core.settings import Settings
from runner.registrations.github_access import GitHubAccess
from runner.registrations.registrations import Registrations
from runner.scheduling.control import BuildControl
from runner.store import Delivery, DeliveryOutcome, RegisteredRepository, Store
from runner.store.projects import ProjectDirectory

LAST_BUILDS = 5


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    access: GitHubAccess
    auth: Authenticator
    registrations: Registrations
    projects: ProjectDirectory
    repositories: Repositories
    describe_builds: Callable[[Sequence[Build]], Awaitable[list[dict[str, Any]]]]
    queue_builds: Callable[[Delivery], Awaitable[DeliveryOutcome]]
    control: BuildControl

    async def describe_build(self, build: Build) -> dict[str, Any]:
        return (await self.describe_builds([build]))[0]

    @property
    def public_url(self) -> str:
        return self.settings.server.public_url

    def webhook_url(self, registered: RegisteredRepository) -> str:
        return f"{self.public_url}/webhooks/{registered.webhook_uid}"

    async def registered(self, repository: str) -> RegisteredRepository:
        found = await self.store.registration(repository)
        if found is None:
            raise not_found()
        return found

    async def path_registration(self, request: web.Request, needed: str) -> RegisteredRepository:
        """The registration the path names, once the caller's access allows `needed`."""
        _, access = await self.auth.repository(request, path_repository(request), needed)
        return await self.registered(access.repository)

    async def repository_json(self, registered: RegisteredRepository) -> dict[str, Any]:
        owner, name = registered.repository.split("/")
        builds = await self.store.list_builds(registered.repository, limit=LAST_BUILDS)
        return {
            "repository": registered.repository,
            "owner": owner,
            "name": name,
            "status": registered.status,
            "status_reason": registered.status_reason,
            "jobs": ["test", "deploy"] if registered.deploy_enabled else ["test"],
            "deploy_branch": registered.deploy_branch,
            "default_branch": registered.default_branch,
            "timeout": registered.timeout,
            "schedule": registered.schedule,
            "schedule_timezone": registered.schedule_timezone,
            "schedule_branch": registered.schedule_branch,
            # Which notification keys are set, never their values (URLs and secrets).
            "notify": sorted(registered.notify),
            "webhook_url": self.webhook_url(registered),
            "hook_id": registered.hook_id,
            "registered_by": registered.registered_by,
            "created_at": iso(registered.created_at),
            "builds_url": f"{self.public_url}/api/repositories/{registered.repository}/builds",
            "last_builds": await self.describe_builds(builds),
        }


def validated(request: web.Request) -> Validated:
    return request[VALIDATED]


def body(request: web.Request) -> dict[str, Any]:
    found = validated(request).body
    return dict(found) if isinstance(found, dict) else {}


def path_repository(request: web.Request) -> str:
    path = validated(request).path
    repository = f"{path['owner']}/{path['name']}"
    if not is_repository_name(repository):
        raise not_found()
    return repository


def unprocessable(message: str, pointer: str = "") -> ProblemError:
    return ProblemError(
        422, message, errors=[{"location": "body", "pointer": pointer, "message": message}]
    )


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
