"""The OpenAPI document (`openapi.yaml` beside this file) is the source of truth for the API.

It is loaded once, served as JSON and YAML, rendered by Swagger UI at `/api/docs` from assets
Hobotnica serves itself (the `swagger-ui-bundle` package: no CDN), and every `/api/` request is
validated against it before a handler runs (`runner.api.middleware`).
"""

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

if TYPE_CHECKING:
    from openapi_core import OpenAPI

SPEC_FILE = "openapi.yaml"
DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hobotnica API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
<link rel="icon" href="/api/docs/static/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body></html>
"""

_DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
});
"""

# The page runs only its own scripts; Swagger UI needs inline styles and data: images.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)


@functools.cache
def spec_text() -> str:
    return resources.files("runner.api").joinpath(SPEC_FILE).read_text("utf-8")


@functools.cache
def spec_dict() -> dict[str, Any]:
    loaded = yaml.safe_load(spec_text())
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def openapi() -> "OpenAPI":
    from openapi_core import Config, OpenAPI  # at first use: see runner.api.middleware

    # Problem details are JSON under their own media type (RFC 9457).
    config = Config(extra_media_type_deserializers={"application/problem+json": orjson.loads})
    return OpenAPI.from_dict(spec_dict(), config=config)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/openapi.json", _json),
        web.get("/api/openapi.yaml", _yaml),
        web.get("/api/docs", _docs),
        web.get("/api/docs/init.js", _docs_init),
        web.get("/api/docs/static/{asset}", _docs_asset),
    ]


async def _json(_request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(spec_dict()), content_type="application/json")


async def _yaml(_request: web.Request) -> web.Response:
    return web.Response(text=spec_text(), content_type="application/yaml", charset="utf-8")


async def _docs(_request: web.Request) -> web.Response:
    return web.Response(
        text=_DOCS_PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": _DOCS_CSP},
    )


async def _docs_init(_request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_INIT, content_type="application/javascript", charset="utf-8")


async def _docs_asset(request: web.Request) -> web.StreamResponse:
    asset = request.match_info["asset"]
    if asset not in DOCS_ASSETS:  # an allowlist: the name never reaches the file system
        raise web.HTTPNotFound()
    return web.FileResponse(
        swagger_ui_path / asset, headers={"Cache-Control": "public, max-age=86400"}
    )
