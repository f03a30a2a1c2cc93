"""Builds through the API: list a repository's builds, start one by hand, cancel one.

A build started by hand goes through the same store transaction as a webhook's (a `Delivery`
with an `api-` id), so superseding, deploy ordering and statuses work as they do for pushes.
Its place in its branch's order is its arrival: a newer request wins over older queued ones.
"""

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from runner.api.context import ApiContext, body, path_repository, unprocessable, validated
from runner.api.problems import ProblemError, not_found
from runner.core.models import BuildRequest
from runner.core.names import is_branch_name
from runner.core.settings import Project
from runner.registrations.github_access import RepositoryAccess
from runner.scheduling.control import Cancelled
from runner.store import Delivery

BRANCH_FETCH_TIMEOUT = 60.0


@dataclass(frozen=True)
class _Known:
    repository: str
    login: str
    token: str | None  # a registration's own; None: the daemon's
    access: RepositoryAccess


class BuildHandlers:
    def __init__(self, context: ApiContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        builds = "/api/repositories/{owner}/{name}/builds"
        return [
            web.get(builds, self.list),
            web.post(builds, self.start),
            web.post("/api/builds/{id:[0-9]+}/cancel", self.cancel),
            web.post("/api/builds/{id:[0-9]+}/approve", self.approve),
        ]

    async def _known(self, request: web.Request, needed: str) -> _Known:
        """A registered or configured repository the caller may act on as `needed`."""
        context = self._context
        caller, access = await context.auth.repository(request, path_repository(request), needed)
        registered = await context.store.registration(access.repository)
        if registered is not None:
            return _Known(registered.repository, caller.login, registered.token, access)
        project = context.settings.project(access.repository)
        if project is None:
            raise not_found()
        return _Known(project.repository, caller.login, None, access)

    async def list(self, request: web.Request) -> web.Response:
        repository = (await self._known(request, "READ")).repository
        query = validated(request).query
        per_page = int(query.get("per_page", 30))
        builds = await self._context.store.list_builds(
            repository,
            branch=query.get("branch"),
            state=query.get("state"),
            before=query.get("before"),
            limit=per_page + 1,
        )
        next_url = None
        if len(builds) > per_page:
            builds = builds[:per_page]
            following: dict[str, Any] = {
                k: v for k, v in query.items() if k in ("branch", "state", "per_page")
            }
            following["before"] = builds[-1].id
            next_url = (
                f"{self._context.public_url}/api/repositories/{repository}/builds?"
                + urlencode(following)
            )
        described = await self._context.describe_builds(builds)
        return web.json_response({"builds": described, "next": next_url})

    async def start(self, request: web.Request) -> web.Response:
        """Build a branch's head or a commit on it, or re-run a commit as it was built.

        A commit given with its branch must be on that branch, and a deploy builds only the
        deploy branch's head: a person with write access cannot deploy a commit the branch's
        protection never let in, nor go back to an older one. A commit given alone is built as
        its newest build was (a pull request's commit stays a pull request's, fork rules and all).
        `job` defaults to `test`; `deploy` answers with the test build, which deploys once green.
        """
        context = self._context
        known = await self._known(request, "WRITE")
        wanted = body(request)
        deploy = wanted.get("job", "test") == "deploy"
        ref: str | None = wanted.get("ref")
        sha: str | None = wanted.get("sha")
        if ref is not None and not is_branch_name(ref):
            raise unprocessable("not a valid branch name", "/ref")
        project = await context.projects.resolve(known.repository)
        if project is None:
            raise ProblemError(409, "the repository is disabled; register it again")
        if ref is None:
            if sha is None:
                raise unprocessable("give ref (a branch), sha (a commit on it), or both")
            if deploy:
                raise unprocessable("a deploy needs ref: the deploy branch", "/ref")
            request_ = await self._as_built_before(known.repository, sha)
        else:
            if deploy:
                deploy_branch = project.deploy_branch or known.access.default_branch
                if not project.deploy_enabled or ref != deploy_branch:
                    raise unprocessable(
                        "only the deploy branch is deployed, so deploys never go backwards",
                        "/job",
                    )
            head = await self._branch_head(known, project, ref)
            if sha is not None and sha != head:
                if deploy:
                    raise unprocessable("only the deploy branch's head is deployed", "/sha")
                if not await context.repositories.is_ancestor(known.repository, sha, head):
                    raise unprocessable("that commit is not on the branch", "/sha")
            request_ = BuildRequest(
                repository=known.repository,
                sha=sha or head,
                ref=f"refs/heads/{ref}",
                branch=ref,
                deploy_after_test=deploy,
            )
        request_ = replace(request_, asked_by=known.login)  # shown as "Asked by" on its page
        outcome = await context.queue_builds(
            Delivery(
                id=f"api-{uuid.uuid4()}",
                event="api",
                hook_id=None,
                received_at=time.time(),
                outcome=f"accepted: started by {known.login}",
                requests=(request_,),
                stop_running=context.settings.builds.cancel_running,
            )
        )
        build = await context.store.get_build(outcome.build_ids[0])
        assert build is not None
        shown = await context.describe_build(build)
        return web.json_response(shown, status=202, headers={"Location": shown["url"]})

    async def _as_built_before(self, repository: str, sha: str) -> BuildRequest:
        earlier = await self._context.store.latest_build_of_sha(repository, sha)
        if earlier is None:
            raise unprocessable("this commit was never built here: give its branch as ref")
        return dataclasses.replace(
            earlier.request, deploy_after_test=False, message="", author="", pushed_at=None
        )

    async def _branch_head(self, known: "_Known", project: Project, branch: str) -> str:
        context = self._context
        try:
            async with asyncio.timeout(BRANCH_FETCH_TIMEOUT):
                head = await context.repositories.branch_head(
                    known.repository, branch, context.projects.clone_url(project), known.token
                )
        except TimeoutError:
            raise ProblemError(503, "the repository could not be fetched in time") from None
        if head is None:
            raise unprocessable("no such branch in the repository (or it is still cloning)", "/ref")
        return head

    async def _writer_of(self, request: web.Request) -> tuple[int, str]:
        """The build the path names, and the login of the caller, who may write to its
        repository (or `ProblemError`)."""
        context = self._context
        build_id = int(validated(request).path["id"])
        await context.auth.caller(request)  # strangers learn nothing about which ids exist
        build = await context.store.get_build(build_id)
        if build is None or context.projects.is_local(build.repository):
            raise not_found()
        caller, _ = await context.auth.repository(request, build.repository, "WRITE")
        return build_id, caller.login

    async def _answer(self, build_id: int) -> web.Response:
        build = await self._context.store.get_build(build_id)
        assert build is not None
        return web.json_response(await self._context.describe_build(build), status=202)

    async def cancel(self, request: web.Request) -> web.Response:
        build_id, login = await self._writer_of(request)
        outcome = await self._context.control.cancel(build_id, by=login)
        if outcome is Cancelled.NOT_FOUND:
            raise not_found()
        if outcome is Cancelled.ALREADY_FINISHED:
            raise ProblemError(409, "the build has already finished")
        return await self._answer(build_id)

    async def approve(self, request: web.Request) -> web.Response:
        build_id, login = await self._writer_of(request)
        approved = await self._context.control.approve(build_id, by=login)
        if approved is None:
            raise not_found()
        if not approved:
            raise ProblemError(409, "the build is not waiting for approval")
        return await self._answer(build_id)
