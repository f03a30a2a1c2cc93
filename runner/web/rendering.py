"""Server-rendered HTML: one Jinja2 environment, the headers every page carries, own assets.

Pages load nothing from elsewhere (no CDN, no web fonts): the stylesheet, the colour palette of
logs and the build page's script are served by the daemon under `/static/`, with a content hash
in their URLs, so an upgrade never leaves a browser with a stale copy. The Content-Security-Policy
allows exactly that: scripts, styles and event streams from this origin, no inline script, no
frames, forms that post only here. Jinja autoescapes everything; templates never mark text safe
except HTML that `runner.web.logview` rendered from escaped text.
"""

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from runner.core.links import on_github
from runner.web.ansi import palette_css
from runner.web.auth import Access, viewer_of

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self';"
        " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
ASSET_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str


def load_assets() -> dict[str, Asset]:
    files = resources.files("runner.web").joinpath("static")
    bodies = {item.name: item.read_bytes() for item in files.iterdir() if item.is_file()}
    bodies["ansi.css"] = palette_css().encode()
    return {
        name: Asset(body, ASSET_TYPES[name.rsplit(".", 1)[-1]], _digest(body))
        for name, body in bodies.items()
        if name.rsplit(".", 1)[-1] in ASSET_TYPES
    }


class Renderer:
    def __init__(
        self,
        access: Access,
        *,
        builds_paused: Callable[[], str | None] = lambda: None,
        git_url: str = "",
    ) -> None:
        self._access = access
        self._builds_paused = builds_paused
        self._assets = load_assets()
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("runner.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.globals["asset"] = self.asset_url
        # A repository's page on GitHub (`github.git_url`): on_github(repository, "commit/SHA").
        self._templates.globals["on_github"] = functools.partial(on_github, git_url)

    def asset_url(self, name: str) -> str:
        return f"/static/{name}?v={self._assets[name].version}"

    def page(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        viewer = viewer_of(request)
        html = self._templates.get_template(template).render(
            viewer=viewer,
            public=self._access.public,
            can_sign_in=self._access.has_users,
            here=request.rel_url.path_qs,
            builds_paused=self._builds_paused(),
            **context,
        )
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/static/{name}", self._asset)]

    async def _asset(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        current = request.query.get("v") == asset.version
        return web.Response(
            body=asset.body,
            content_type=asset.content_type,
            charset="utf-8",
            headers={
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
            },
        )


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:12]
