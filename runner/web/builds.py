"""The build record: `GET /builds/{id}` (HTML), `/api/builds/{id}` (JSON), `/api/builds/{id}/log`.

`{id}` is the value of `HOBOTNICA_BUILD_ID` in the build's environment and the page is the
commit status's `target_url`. The log on disk is already masked; the text fields taken from the
webhook (commit message, branch, author) are masked again here, in case a secret was committed.
"""

import asyncio
import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from runner.build.environment import build_url
from runner.build.logfile import log_path
from runner.build.masking import SecretMasker
from runner.models import Build
from runner.names import short_sha
from runner.projects import ProjectDirectory
from runner.settings import Settings
from runner.statuses import format_duration
from runner.store import Store

# The page shows the end of the log, where failures are; the API serves the whole file.
PAGE_LOG_BYTES = 1024 * 1024

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("runner.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class BuildViews:
    def __init__(self, settings: Settings, store: Store, projects: ProjectDirectory) -> None:
        self._settings = settings
        self._store = store
        self._projects = projects

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/builds/{id:[0-9]+}", self.page),
            web.get("/api/builds/{id:[0-9]+}", self.as_json),
            web.get("/api/builds/{id:[0-9]+}/log", self.log),
        ]

    async def _build(self, request: web.Request) -> Build:
        build = await self._store.get_build(int(request.match_info["id"]))
        if build is None:
            raise web.HTTPNotFound(text="no such build\n")
        return build

    async def _masker(self, build: Build) -> SecretMasker:
        project = await self._projects.resolve(build.repository)
        return SecretMasker(project.secrets.values() if project else ())

    async def describe(self, build: Build) -> dict[str, Any]:
        mask = (await self._masker(build)).mask_text
        request = build.request
        url = build_url(self._settings.server.public_url, build.id)
        return {
            "id": build.id,
            "url": url,
            "log_url": f"{self._settings.server.public_url}/api/builds/{build.id}/log",
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
        return web.json_response(await self.describe(await self._build(request)))

    async def log(self, request: web.Request) -> web.StreamResponse:
        build = await self._build(request)
        path = log_path(self._settings.data_dir, build.id)
        if not path.exists():
            return web.Response(text="", content_type="text/plain", charset="utf-8")
        response = web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})
        response.content_type = "text/plain"
        response.charset = "utf-8"
        return response

    async def page(self, request: web.Request) -> web.Response:
        build = await self._build(request)
        path = log_path(self._settings.data_dir, build.id)
        text, skipped = await asyncio.to_thread(_tail, path, PAGE_LOG_BYTES)
        info = await self.describe(build)
        html = _templates.get_template("build.html").render(
            build=info,
            final=build.state.is_final,
            log_text=text,
            log_skipped=skipped,
            duration=format_duration(info["duration_s"]) if info["duration_s"] is not None else "",
            short_sha=short_sha(build.sha),
        )
        return web.Response(
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )


def _tail(path: Path, limit: int) -> tuple[str, int]:
    """The last `limit` bytes of the log as text, and how many bytes came before them."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            start = max(0, size - limit)
            file.seek(start)
            data = file.read(limit)
    except FileNotFoundError:
        return "", 0
    return data.decode("utf-8", errors="replace"), start


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
