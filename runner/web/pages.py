"""The lists: `GET /` (every repository at a glance, and what runs now) and `GET /{owner}/{name}`
(one repository's builds, filtered by branch and state, newest first, a page at a time).

- `/`: the running and queued builds; then each repository (`RepositoryCatalog.repositories`)
  with its badge and the newest builds of its default branch and of its most recently built
  branches and pull requests (test and deploy side by side). Refreshes itself every 15 s while
  anything runs or waits.
- `/{owner}/{name}?branch=&state=&before=`: `PAGE_SIZE` builds older than build `before`, with
  links to older ones and back to the newest. A name that differs only in case redirects to the
  known spelling; a bad branch name or state is a 400, an unknown repository a 404.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from runner.core.models import Build, BuildState, Job
from runner.core.names import is_branch_name, is_repository_name
from runner.store import Store
from runner.web.auth import Access
from runner.web.catalog import RepositoryCatalog
from runner.web.durations import duration_chart
from runner.web.present import BuildView
from runner.web.rendering import Renderer

PAGE_SIZE = 50
ACTIVE_LIMIT = 50
LANES_SHOWN = 6
# Path segments the daemon's own routes start with; no repository page lives under them.
RESERVED_OWNERS = ("api", "builds", "static", "webhooks", "signin", "signout", "health", "metrics")
REPOSITORY_PATH = (
    "/{owner:(?!(?:" + "|".join(RESERVED_OWNERS) + ")/)[A-Za-z0-9_.-]+}/{name:[A-Za-z0-9_.-]+}"
)


@dataclass(frozen=True)
class Lane:
    name: str
    is_default: bool
    builds: list[BuildView]  # the newest test build, then the newest deploy


@dataclass(frozen=True)
class RepositoryCard:
    name: str
    default_branch: str | None
    default_state: str | None
    lanes: list[Lane]


class PageViews:
    def __init__(
        self, store: Store, catalog: RepositoryCatalog, renderer: Renderer, access: Access
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._renderer = renderer
        self._access = access

    def routes(self) -> list[web.RouteDef]:
        read = self._access.protect
        return [
            web.get("/", read(self.dashboard)),
            web.get(REPOSITORY_PATH, read(self.repository)),
        ]

    async def dashboard(self, request: web.Request) -> web.Response:
        names = await self._catalog.repositories()
        newest = await self._store.latest_per_lane(names, LANES_SHOWN * 4)
        cards = [await self._card(name, newest[name]) for name in names]
        active = [
            await self._view(build) for build in await self._store.active_builds(ACTIVE_LIMIT)
        ]
        return self._renderer.page(request, "dashboard.html", repositories=cards, active=active)

    async def _card(self, repository: str, builds: list[Build]) -> RepositoryCard:
        masker = await self._catalog.masker(repository)
        default_branch = await self._catalog.default_branch(repository)
        default_ref = f"refs/heads/{default_branch}" if default_branch else None
        by_ref: dict[str, list[Build]] = {}
        for build in builds:  # newest lanes first
            by_ref.setdefault(build.request.ref, []).append(build)
        refs = sorted(by_ref, key=lambda ref: ref != default_ref)[:LANES_SHOWN]
        lanes = []
        for ref in refs:
            ordered = sorted(by_ref[ref], key=lambda b: b.job is not Job.TEST)
            views = [BuildView.of(build, masker) for build in ordered]
            lanes.append(Lane(views[0].lane, ref == default_ref, views))
        default_state = next(
            (lane.builds[0].state for lane in lanes if lane.is_default and lane.builds), None
        )
        shown_branch = masker.mask_text(default_branch) if default_branch else None
        return RepositoryCard(repository, shown_branch, default_state, lanes)

    async def _view(self, build: Build) -> BuildView:
        return BuildView.of(build, await self._catalog.masker(build.repository))

    async def repository(self, request: web.Request) -> web.StreamResponse:
        wanted = f"{request.match_info['owner']}/{request.match_info['name']}"
        repository = await self._catalog.find(wanted) if is_repository_name(wanted) else None
        if repository is None:
            raise web.HTTPNotFound(text="no such repository\n")
        if repository != wanted:
            raise web.HTTPMovedPermanently(f"/{repository}?{request.query_string}".rstrip("?"))
        branch = request.query.get("branch") or None
        if branch is not None and not is_branch_name(branch):
            raise web.HTTPBadRequest(text="branch is not a valid branch name\n")
        state = request.query.get("state") or None
        if state is not None and state not in {s.value for s in BuildState}:
            raise web.HTTPBadRequest(
                text="state must be queued, running, success, failure or error\n"
            )
        before_text = request.query.get("before", "")
        if before_text and not (before_text.isdigit() and len(before_text) <= 18):
            raise web.HTTPBadRequest(text="before must be a build id\n")
        before = int(before_text) if before_text else None

        builds = await self._store.list_builds(
            repository, branch=branch, state=state, before=before, limit=PAGE_SIZE + 1
        )
        masker = await self._catalog.masker(repository)
        views = [BuildView.of(build, masker) for build in builds[:PAGE_SIZE]]
        filters = {k: v for k, v in (("branch", branch), ("state", state)) if v}
        older_url = None
        if len(builds) > PAGE_SIZE:
            older_url = f"/{repository}?" + urlencode({**filters, "before": views[-1].id})
        lanes = (await self._store.latest_per_lane([repository], 100))[repository]
        branches = sorted(
            {masker.mask_text(b.request.branch) for b in lanes if b.request.pull_request is None}
        )
        return self._renderer.page(
            request,
            "repository.html",
            repository=repository,
            builds=views,
            branch=masker.mask_text(branch) if branch else None,
            state=state,
            states=[s.value for s in BuildState],
            branches=branches,
            before=before,
            older_url=older_url,
            newest_url=f"/{repository}?{urlencode(filters)}".rstrip("?"),
            chart=duration_chart(builds),
        )
