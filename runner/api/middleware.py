"""Every `/api/` request is checked against the OpenAPI document before its handler runs.

A request the document does not allow is answered 400 (401 when the credentials are missing)
with one problem entry per failing field; the handler then finds the unmarshalled parameters
and body under `request[VALIDATED]`. Errors inside `/api/` are problem details too, whether a
handler raised `ProblemError`, aiohttp raised an HTTP error (404, 405, 413), the request ran
past its time (504), or something failed unexpectedly (500, never with the exception's text):
`api_error` is the `/api/` handler of the error middleware (`runner.web.middleware`).
"""

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_middlewares.error import error_context

from runner.api.problems import ProblemError, problem
from runner.api.validated import Validated
from runner.core.errors import StoreUnavailable

log = structlog.get_logger(logger_name="hobotnica.api")

VALIDATED = web.RequestKey("validated", Validated)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        # Imported at the first API call: the validator (openapi-core and the meta-schemas
        # it loads) is most of 25 MiB that a daemon taking only webhooks never needs.
        from runner.api.validation import validate

        validated = await validate(request)
        if validated is not None:
            request[VALIDATED] = validated
        return await handler(request)

    return middleware


async def api_error(request: web.Request) -> web.StreamResponse:
    """What an `/api/` request that failed is answered: always a problem document."""
    with error_context(request) as context:
        error = context.err
    if isinstance(error, ProblemError):
        return error.response()
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        return problem(error.status, headers=_kept_headers(error))
    if isinstance(error, StoreUnavailable):
        return problem(503, STORE_UNAVAILABLE, headers={"Retry-After": "60"})
    if isinstance(error, TimeoutError):
        return problem(
            504,
            "the request took too long; a change it makes is completed or not made at all: "
            "look before trying again",
        )
    log.error("unhandled API error", method=request.method, path=request.path, exc_info=error)
    return problem(500, "internal error")


STORE_UNAVAILABLE = "the store cannot write now (its disk is full?); nothing was changed"


def _kept_headers(error: web.HTTPException) -> dict[str, str]:
    return {name: value for name, value in error.headers.items() if name in ("Allow",)}
