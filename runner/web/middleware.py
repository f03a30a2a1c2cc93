"""Middlewares, as factories with keyword-only options.

- `error_middleware`: the one HTTP-side place allowed to catch everything, aiohttp-middlewares'
  `error_middleware` with one error handler per route family, chosen by path: `/api/` answers
  problem documents (`runner.api.middleware.api_error`); `/webhooks/` answers the small JSON
  body GitHub shows on the delivery's page; everything else (pages, /health, /metrics) lets
  aiohttp's own HTTP errors through and answers an unexpected exception 500 with a generic
  JSON body — never exception text, which could carry request data or a secret — and a logged
  traceback.
- `client_middleware`: binds `client` (the caller's address) into the log context. Behind nginx
  the peer is nginx, so `X-Forwarded-For` is read, but only when the peer is a trusted proxy:
  anyone else could write any address into that header.
"""

import re
import warnings
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_middlewares.error import error_context
from aiohttp_middlewares.error import error_middleware as family_error_middleware

log = structlog.get_logger(logger_name="hobotnica.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = re.compile(r"/api/")
WEBHOOKS = re.compile(r"/webhooks/")


def error_middleware(*, api_errors: Handler) -> Middleware:
    # It keeps the error under a plain string key, which aiohttp warns about once per process.
    warnings.filterwarnings(
        "ignore", category=web.NotAppKeyWarning, module=r"aiohttp_middlewares\.error"
    )
    return family_error_middleware(
        default_handler=_page_error, config={API: api_errors, WEBHOOKS: _webhook_error}
    )


async def _page_error(request: web.Request) -> web.StreamResponse:
    with error_context(request) as context:
        error = context.err
    if isinstance(error, web.HTTPException):
        raise error
    log.error("unhandled error", method=request.method, path=request.path, exc_info=error)
    return web.json_response({"error": "internal error"}, status=500)


async def _webhook_error(request: web.Request) -> web.StreamResponse:
    with error_context(request) as context:
        error = context.err
    if isinstance(error, web.HTTPException):
        raise error
    log.error("unhandled webhook error", method=request.method, path=request.path, exc_info=error)
    return web.json_response({"error": "internal error"}, status=500)


def client_middleware(*, trusted_proxies: tuple[str, ...]) -> Middleware:
    trusted = frozenset(trusted_proxies)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        with structlog.contextvars.bound_contextvars(client=client_address(request, trusted)):
            return await handler(request)

    return middleware


def client_address(request: web.BaseRequest, trusted: frozenset[str]) -> str:
    """The caller: the peer, or the last `X-Forwarded-For` hop when the peer is a trusted proxy."""
    client = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if client in trusted and forwarded:
        client = forwarded.rsplit(",", 1)[-1].strip()[:64]
    return client
