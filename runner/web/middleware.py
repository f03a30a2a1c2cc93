"""Middlewares, as factories with keyword-only options.

- `error_middleware`: the one HTTP-side place allowed to catch everything. An unexpected
  exception becomes a 500 with a generic JSON body (never exception text, which could carry
  request data or a secret) and a logged traceback. aiohttp's own HTTP errors pass through.
- `client_middleware`: binds `client` (the caller's address) into the log context. Behind nginx
  the peer is nginx, so `X-Forwarded-For` is read, but only when the peer is a trusted proxy:
  anyone else could write any address into that header.
"""

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

log = structlog.get_logger(logger_name="hobotnica.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path)
            return web.json_response({"error": "internal error"}, status=500)

    return middleware


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
