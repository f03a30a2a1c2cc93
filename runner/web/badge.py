"""`GET /{owner}/{name}/badge.svg?branch=`: the state of a branch's tests as a status badge.

Drawn like shields.io's "flat" badges: `build | passing` (green), `failing` (red), `error`
(amber: could not run, timed out, cancelled), `running` (blue: the newest build is queued or
running), `unknown` (grey: no build of that branch yet). The state is the newest test build of
the branch that was not superseded (pull requests are not branches here).

Without `?branch=`: the project's configured deploy branch; for a local repository, the branch
`hobotnica try` tried (its bare repository's HEAD); else the branch the newest deploy-bound push
went to (the repository's default branch as GitHub said in that push), else `unknown`
(`RepositoryCatalog.default_branch`). Served with `Cache-Control: no-cache`, so GitHub's image
proxy asks again each time.
"""

from html import escape

from aiohttp import web

from runner.core.models import Build, BuildState
from runner.core.names import is_branch_name, is_repository_name
from runner.store import Store
from runner.web.auth import Access
from runner.web.catalog import RepositoryCatalog
from runner.web.pages import REPOSITORY_PATH

LABEL = "build"
COLOURS = {
    "passing": "#4c1",
    "failing": "#e05d44",
    "error": "#dfb317",
    "running": "#007ec6",
    "unknown": "#9f9f9f",
}
# Verdana 11 px advance widths (as shields.io measures), for the few words a badge shows.
_WIDTHS = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        (
            6.8,
            6.9,
            5.9,
            6.9,
            6.6,
            3.9,
            6.9,
            7.0,
            3.0,
            3.8,
            6.5,
            3.0,
            10.7,
            7.0,
            6.7,
            6.9,
            6.9,
            4.7,
            5.7,
            4.3,
            7.0,
            6.5,
            8.9,
            6.5,
            6.5,
            5.8,
        ),
        strict=True,
    )
)


def badge_state(build: Build | None) -> str:
    if build is None:
        return "unknown"
    return {
        BuildState.QUEUED: "running",
        BuildState.RUNNING: "running",
        BuildState.SUCCESS: "passing",
        BuildState.FAILURE: "failing",
        BuildState.ERROR: "error",
    }[build.state]


def badge_svg(label: str, message: str, colour: str) -> str:
    """A flat badge; `label` and `message` are escaped, though callers pass fixed words."""
    left, right = _width(label) + 10, _width(message) + 10
    total = left + right
    title = escape(f"{label}: {message}")

    def text(word: str, centre: float) -> str:
        x, length = round(centre * 10), round(_width(word) * 10)
        word = escape(word)
        return (
            f'<text aria-hidden="true" x="{x}" y="150" fill="#010101" fill-opacity=".3" '
            f'transform="scale(.1)" textLength="{length}">{word}</text>'
            f'<text x="{x}" y="140" transform="scale(.1)" fill="#fff" '
            f'textLength="{length}">{word}</text>'
        )

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="110">'
        f"{text(label, left / 2)}{text(message, left + right / 2)}</g></svg>"
    )


def _width(word: str) -> int:
    return round(sum(_WIDTHS.get(c, 7.0) for c in word))


class BadgeView:
    def __init__(self, store: Store, catalog: RepositoryCatalog, access: Access) -> None:
        self._store = store
        self._catalog = catalog
        self._access = access

    def routes(self) -> list[web.RouteDef]:
        return [web.get(REPOSITORY_PATH + "/badge.svg", self._access.protect(self.badge))]

    async def badge(self, request: web.Request) -> web.Response:
        wanted = f"{request.match_info['owner']}/{request.match_info['name']}"
        repository = await self._catalog.find(wanted) if is_repository_name(wanted) else None
        branch = request.query.get("branch") or None
        if branch is not None and not is_branch_name(branch):
            raise web.HTTPBadRequest(text="branch is not a valid branch name\n")
        build = None
        if repository is not None:
            branch = branch or await self._catalog.default_branch(repository)
            if branch is not None:
                build = await self._store.latest_test_build(repository, branch)
        state = badge_state(build)
        return web.Response(
            text=badge_svg(LABEL, state, COLOURS[state]),
            status=200 if repository is not None else 404,
            content_type="image/svg+xml",
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache, max-age=0",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            },
        )
