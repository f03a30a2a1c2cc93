"""Every `/api/` request is checked against the OpenAPI document before its handler runs.

A request the document does not allow is answered 400 (401 when the credentials are missing)
with one problem entry per failing field; the handler then finds the unmarshalled parameters
and body under `request[VALIDATED]`. Errors inside `/api/` are problem details too, whether a
handler raised `ProblemError`, aiohttp raised an HTTP error (404, 405, 413), or something failed
unexpectedly (500, never with the exception's text).
"""

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from runner.api.problems import ProblemError, problem
from runner.api.validated import Validated

log = structlog.get_logger(logger_name="hobotnica.api")

VALIDATED = web.RequestKey("validated", Validated)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        try:
            # Imported at the first API call: the validator (openapi-core and the meta-schemas
            # it loads) is most of 25 MiB that a daemon taking only webhooks never needs.
            from runner.api.validation import validate

            validated = await validate(request)
            if validated is not None:
                request[VALIDATED] = validated
            return await handler(request)
        except ProblemError as error:
            return error.response()
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return problem(error.status, headers=_kept_headers(error))
        except Exception:
            log.exception("unhandled API error", method=request.method, path=request.path)
            return problem(500, "internal error")

    return middleware


def _kept_headers(error: web.HTTPException) -> dict[str, str]:
    return {name: value for name, value in error.headers.items() if name in ("Allow",)}
