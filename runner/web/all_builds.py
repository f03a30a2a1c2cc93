"""`GET /builds`: every build of every repository, newest first, a page at a time, filtered by
repository, branch, job, state and who pushed (`?repository=&branch=&job=&state=&author=&before=`).

Each filter is an index's first column (`runner.store.sql.listing.page`), so a page stays a page
of index entries with 100,000 builds in the store (`bench/builds_page.py` measures it). A filter
that is not a valid value is a 400, never a query.
"""

from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from aiohttp import web

from runner.core.masking import SecretMasker
from runner.core.models import BuildState, Job
from runner.core.names import is_branch_name, is_repository_name
from runner.store import Store
from runner.web.auth import Access
from runner.web.catalog import RepositoryCatalog
from runner.web.present import BuildView
from runner.web.rendering import Renderer

PAGE_SIZE = 50
MAX_AUTHOR = 100
STATES = tuple(state.value for state in BuildState)
JOBS = tuple(job.value for job in Job)


class AllBuilds:
    def __init__(
        self, store: Store, catalog: RepositoryCatalog, renderer: Renderer, access: Access
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._renderer = renderer
        self._access = access

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/builds", self._access.protect(self.page))]

    async def page(self, request: web.Request) -> web.Response:
        filters = _filters(request.query)
        before_text = request.query.get("before", "")
        if before_text and not (before_text.isdigit() and len(before_text) <= 18):
            raise web.HTTPBadRequest(text="before must be a build id\n")
        before = int(before_text) if before_text else None
        builds = await self._store.list_builds(
            filters.get("repository"),
            branch=filters.get("branch"),
            state=filters.get("state"),
            job=filters.get("job"),
            author=filters.get("author"),
            before=before,
            limit=PAGE_SIZE + 1,
        )
        maskers: dict[str, SecretMasker] = {}
        views = []
        for build in builds[:PAGE_SIZE]:
            if build.repository not in maskers:
                maskers[build.repository] = await self._catalog.masker(build.repository)
            views.append(BuildView.of(build, maskers[build.repository]))
        older_url = None
        if len(builds) > PAGE_SIZE:
            older_url = "/builds?" + urlencode({**filters, "before": views[-1].id})
        return self._renderer.page(
            request,
            "builds.html",
            builds=views,
            filters=filters,
            repositories=await self._catalog.repositories(),
            states=STATES,
            jobs=JOBS,
            before=before,
            older_url=older_url,
            newest_url=f"/builds?{urlencode(filters)}".rstrip("?"),
        )


def _filters(query: Mapping[str, str]) -> dict[str, str]:
    """The filters asked for, each checked; a 400 names the first that is not valid."""
    found = {
        name: query.get(name, "") for name in ("repository", "branch", "job", "state", "author")
    }
    found = {name: value for name, value in found.items() if value}
    checks: dict[str, Callable[[str], bool]] = {
        "repository": is_repository_name,
        "branch": is_branch_name,
        "job": JOBS.__contains__,
        "state": STATES.__contains__,
        "author": _is_author,
    }
    for name, value in found.items():
        if not checks[name](value):
            raise web.HTTPBadRequest(text=f"{name} is not a valid {name}\n")
    return found


def _is_author(value: str) -> bool:
    return len(value) <= MAX_AUTHOR and value.isprintable()
