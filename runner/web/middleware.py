"""The error middleware: the one HTTP-side place allowed to catch everything.

An unexpected exception becomes a 500 with a generic JSON body (never exception text, which could
carry request data or a secret) and a logged traceback. aiohttp's own HTTP errors pass through.
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
