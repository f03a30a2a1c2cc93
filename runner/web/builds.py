"""One build: its page `GET /builds/{id}` (the commit status's `target_url`), its live events,
the cancel and re-run forms, and `GET /api/builds/{id}` (JSON) and `/api/builds/{id}/log` (text).

`{id}` is the value of `HOBOTNICA_BUILD_ID` in the build's environment. Reading needs what
`Access.protect` asks for; cancel and re-run need a session (`Access.require_session`). The page
shows the last `PAGE_LOG_BYTES` of the log, numbered from the start of the file, and links the
raw log. The log on disk is masked by the worker; everything shown is masked again here
(`RepositoryCatalog.masker`), in case a secret was added or committed since.
"""

import asyncio
import datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from runner.core.instance import node_of
from runner.core.links import build_url, on_github
from runner.core.masking import SecretMasker
from runner.core.models import Build, Job
from runner.core.settings import Settings
from runner.scheduling.control import BuildControl, Cancelled
from runner.store import Store
from runner.web.auth import Access, viewer_of
from runner.web.catalog import RepositoryCatalog
from runner.web.live import LiveLog
from runner.web.log_files import LogFiles
from runner.web.logview import read_tail
from runner.web.present import BuildView
from runner.web.rendering import Renderer

# The page shows the end of the log, where failures are; the raw log is the whole file. Half a
# MiB of short lines is some 25,000 numbered lines, about 3 MB of HTML: still quick to open.
PAGE_LOG_BYTES = 512 * 1024
BUILD_ID = "{id:[0-9]{1,18}}"

# What a page says after a form was sent (`?notice=`): fixed texts, never text from the URL.
CANCEL_NOTICES = {
    Cancelled.ENDED: "cancelled",
    Cancelled.STOPPING: "cancelling",
    Cancelled.ALREADY_FINISHED: "already-finished",
}
NOTICES = {
    "cancelled": "Cancelled.",
    "cancelling": "Cancelling: the build is being stopped.",
    "already-finished": "The build had already finished.",
    "rerun": "This is a re-run, asked for on an earlier build's page.",
    "approved": "Approved: it runs in the sandbox, without the project's secrets.",
    "not-waiting": "This build was not waiting for approval.",
}


class BuildViews:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: RepositoryCatalog,
        renderer: Renderer,
        access: Access,
        control: BuildControl,
        live: LiveLog,
        logs: LogFiles,
    ) -> None:
        self._settings = settings
        self._logs = logs
        self._store = store
        self._catalog = catalog
        self._renderer = renderer
        self._access = access
        self._control = control
        self._live = live

    def routes(self) -> list[web.RouteDef]:
        read, change = self._access.protect, self._access.require_session
        return [
            web.get(f"/builds/{BUILD_ID}", read(self.page)),
            web.get(f"/builds/{BUILD_ID}/events", read(self._live.stream)),
            web.post(f"/builds/{BUILD_ID}/cancel", change(self.cancel)),
            web.post(f"/builds/{BUILD_ID}/rerun", change(self.rerun)),
            web.post(f"/builds/{BUILD_ID}/approve", change(self.approve)),
            web.get(f"/api/builds/{BUILD_ID}", read(self.as_json)),
            web.get(f"/api/builds/{BUILD_ID}/log", read(self.log)),
        ]

    async def _build(self, request: web.Request) -> Build:
        build = await self._store.get_build(int(request.match_info["id"]))
        if build is None:
            raise web.HTTPNotFound(text="no such build\n")
        return build

    async def describe(self, build: Build) -> dict[str, Any]:
        return (await self.describe_all([build]))[0]

    async def describe_all(self, builds: Sequence[Build]) -> list[dict[str, Any]]:
        """Builds as JSON, each repository's masker looked up once (a listing shows many)."""
        maskers: dict[str, SecretMasker] = {}
        described = []
        for build in builds:
            if build.repository not in maskers:
                maskers[build.repository] = await self._catalog.masker(build.repository)
            described.append(self._described(build, maskers[build.repository]))
        return described

    def _described(self, build: Build, masker: SecretMasker) -> dict[str, Any]:
        mask = masker.mask_text
        request = build.request
        public_url = self._settings.server.public_url
        return {
            "id": build.id,
            "url": build_url(public_url, build.id),
            "log_url": f"{public_url}/api/builds/{build.id}/log",
            "repository": build.repository,
            "job": build.job.value,
            "context": build.job.context,
            "sha": request.sha,
            "ref": mask(request.ref),
            "branch": mask(request.branch),
            "pull_request": request.pull_request,
            "from_fork": request.from_fork,
            "message": mask(request.message),
            "author": mask(request.author),
            "state": build.state.value,
            "description": mask(build.description),
            "exit_code": build.exit_code,
            "attempt": build.attempt,
            "node": node_of(build.ran_on),
            "approval": build.approval,
            "test_build_id": build.parent_id,
            "rerun_of": build.rerun_of,
            # Its success queues a deploy (`rules.deploy_after`): said at once, so whoever
            # asked for a deploy sees that this test build is the first half of it.
            "deploys_after_test": (
                build.job is Job.TEST and request.deploy_after_test and not request.from_fork
            ),
            "before": request.before or None,
            "asked_by": mask(request.asked_by) or None,
            "trigger": request.trigger,
            "received_at": _iso(build.received_at),
            "queued_at": _iso(build.queued_at),
            "started_at": _iso(build.started_at),
            "finished_at": _iso(build.finished_at),
            "duration_s": (
                round(build.finished_at - build.started_at, 3)
                if build.finished_at and build.started_at
                else None
            ),
        }

    async def as_json(self, request: web.Request) -> web.Response:
        build = await self._build(request)
        lineage = await self._lineage(build)
        described = await self.describe(build)
        described.update(deploy_build_ids=lineage["deploys"], rerun_build_ids=lineage["reruns"])
        return web.json_response(described)

    async def log(self, request: web.Request) -> web.StreamResponse:
        build = await self._build(request)
        path = await self._logs.path(build.id)
        if not path.exists():
            return web.Response(text="", content_type="text/plain", charset="utf-8")
        response = web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})
        response.content_type = "text/plain"
        response.charset = "utf-8"
        return response

    async def page(
        self, request: web.Request, *, notice: str | None = None, status: int = 200
    ) -> web.Response:
        build = await self._build(request)
        masker = await self._catalog.masker(build.repository)
        view = BuildView.of(build, masker)
        path = await self._logs.path(build.id)
        tail = await asyncio.to_thread(
            read_tail, path, PAGE_LOG_BYTES, masker, final=build.state.is_final
        )
        asked = request.query.get("notice", "")
        if asked == "cancelling" and build.state.is_final:
            asked = "cancelled"  # it has stopped since: the banner says so, not "being stopped"
        notice = notice or NOTICES.get(asked)
        return self._renderer.page(
            request,
            "build.html",
            status=status,
            build=view,
            log=tail,
            events_url=f"/builds/{build.id}/events?from={tail.end}.{tail.next_line}",
            raw_log_url=f"/api/builds/{build.id}/log",
            github=self._github_links(view),
            lineage=await self._lineage(build),
            notice=notice,
            notice_until_final=asked == "cancelling",
            notice_bad=status >= 400,
        )

    async def _lineage(self, build: Build) -> dict[str, Any]:
        """The builds this one came of, and the builds that came of it."""
        deploys, reruns = await self._store.followers(build.id)
        return {
            "after_tests": build.parent_id,
            "rerun_of": build.rerun_of,
            "deploys": deploys,
            "reruns": reruns,
        }

    def _github_links(self, build: BuildView) -> dict[str, str | None]:
        """The build's commit, branch and pull request on GitHub (at `github.git_url`)."""
        git_url, repository = self._settings.github.git_url, build.repository
        pull = build.pull_request
        return {
            "commit": on_github(git_url, repository, f"commit/{build.sha}"),
            "branch": on_github(git_url, repository, f"tree/{quote(build.branch, safe='/')}"),
            "pull_request": on_github(git_url, repository, f"pull/{pull}") if pull else None,
            "compare": (
                on_github(git_url, repository, f"compare/{build.before}...{build.sha}")
                if build.before
                else None
            ),
        }

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        build_id = int(request.match_info["id"])
        outcome = await self._control.cancel(build_id, by=viewer_of(request).user or "")
        if outcome is Cancelled.NOT_FOUND:
            raise web.HTTPNotFound(text="no such build\n")
        raise web.HTTPSeeOther(f"/builds/{build_id}?notice={CANCEL_NOTICES[outcome]}")

    async def approve(self, request: web.Request) -> web.StreamResponse:
        build_id = int(request.match_info["id"])
        approved = await self._control.approve(build_id, by=viewer_of(request).user or "")
        if approved is None:
            raise web.HTTPNotFound(text="no such build\n")
        raise web.HTTPSeeOther(
            f"/builds/{build_id}?notice={'approved' if approved else 'not-waiting'}"
        )

    async def rerun(self, request: web.Request) -> web.StreamResponse:
        build_id = int(request.match_info["id"])
        answer = await self._control.rerun(build_id, by=viewer_of(request).user or "")
        if answer.build_id is None:
            return await self.page(request, notice=f"Not re-run: {answer.refused}.", status=409)
        raise web.HTTPSeeOther(f"/builds/{answer.build_id}?notice=rerun")


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
