"""Builds through the API: list a repository's builds, start one by hand, cancel one.

A build started by hand goes through the same store transaction as a webhook's (a `Delivery`
with an `api-` id), so superseding, deploy ordering and statuses work as they do for pushes.
Its place in its branch's order is its arrival: a newer request wins over older queued ones.
"""

import time
import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from runner.api.context import ApiContext, body, path_repository, unprocessable, validated
from runner.api.problems import ProblemError, not_found
from runner.control import Cancelled
from runner.models import BuildRequest
from runner.names import is_branch_name
from runner.store import Delivery, api_queries, registry


class BuildHandlers:
    def __init__(self, context: ApiContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        builds = "/api/repositories/{owner}/{name}/builds"
        return [
            web.get(builds, self.list),
            web.post(builds, self.start),
            web.post("/api/builds/{id:[0-9]+}/cancel", self.cancel),
        ]

    async def _known(self, request: web.Request, needed: str) -> tuple[str, str, str | None]:
        """(repository, login, token for git) of a registered or configured repository."""
        context = self._context
        caller, access = await context.auth.repository(request, path_repository(request), needed)
        registered = await context.store.transact(registry.get, access.repository)
        if registered is not None:
            return registered.repository, caller.login, registered.token
        project = context.settings.project(access.repository)
        if project is None:
            raise not_found()
        return project.repository, caller.login, None

    async def list(self, request: web.Request) -> web.Response:
        repository, _, _ = await self._known(request, "READ")
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
        described = [await self._context.describe_build(build) for build in builds]
        return web.json_response({"builds": described, "next": next_url})

    async def start(self, request: web.Request) -> web.Response:
        context = self._context
        repository, login, token = await self._known(request, "WRITE")
        wanted = body(request)
        job: str = wanted["job"]
        ref: str | None = wanted.get("ref")
        sha: str | None = wanted.get("sha")
        if ref is not None and not is_branch_name(ref):
            raise unprocessable("not a valid branch name", "/ref")
        project = await context.projects.resolve(repository)
        if project is None:
            raise ProblemError(409, "the repository is disabled; register it again")
        if ref is None:
            if sha is None:
                raise unprocessable("give ref (a branch), sha (a commit), or both")
            earlier = await context.store.transact(api_queries.latest_ref_of_sha, repository, sha)
            if earlier is None:
                raise unprocessable("this commit was never built here: give its branch as ref")
            full_ref, branch = earlier
        else:
            full_ref, branch = f"refs/heads/{ref}", ref
            if sha is None:
                sha = await context.repositories.branch_head(
                    repository, ref, context.projects.clone_url(project), token
                )
                if sha is None:
                    raise unprocessable("no such branch in the repository", "/ref")
        deploy = job == "deploy"
        if deploy:
            deploy_branch = project.deploy_branch or await self._default_branch(repository)
            if not project.deploy_enabled or full_ref != f"refs/heads/{deploy_branch}":
                raise unprocessable(
                    "only the deploy branch is deployed, so deploys never go backwards", "/job"
                )
        now = time.time()
        outcome = await context.queue_builds(
            Delivery(
                id=f"api-{uuid.uuid4()}",
                event="api",
                hook_id=None,
                received_at=now,
                outcome=f"accepted: started by {login}",
                requests=(
                    BuildRequest(
                        repository=repository,
                        sha=sha,
                        ref=full_ref,
                        branch=branch,
                        deploy_after_test=deploy,
                    ),
                ),
                stop_running=context.settings.builds.cancel_running,
            )
        )
        build = await context.store.get_build(outcome.build_ids[0])
        assert build is not None
        shown = await context.describe_build(build)
        return web.json_response(shown, status=202, headers={"Location": shown["url"]})

    async def _default_branch(self, repository: str) -> str:
        registered = await self._context.store.transact(registry.get, repository)
        return registered.default_branch if registered else ""

    async def cancel(self, request: web.Request) -> web.Response:
        context = self._context
        build_id = int(validated(request).path["id"])
        build = await context.store.get_build(build_id)
        if build is None:
            raise not_found()
        caller, _ = await context.auth.repository(request, build.repository, "WRITE")
        outcome = await context.control.cancel(build_id, by=caller.login)
        if outcome is Cancelled.NOT_FOUND:
            raise not_found()
        if outcome is Cancelled.ALREADY_FINISHED:
            raise ProblemError(409, "the build has already finished")
        cancelled = await context.store.get_build(build_id)
        assert cancelled is not None
        return web.json_response(await context.describe_build(cancelled), status=202)
