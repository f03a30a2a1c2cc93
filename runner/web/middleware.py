"""Middlewares, as factories with keyword-only options.

- `error_middleware`: the one HTTP-side place allowed to catch everything, aiohttp-middlewares'
  `error_middleware` with one error handler per route family, chosen by path: `/api/` answers
  problem documents (`runner.api.middleware.api_error`); `/webhooks/` answers the small JSON
  body GitHub shows on the delivery's page; everything else (pages, /health, /metrics) lets
  aiohttp's own HTTP errors through and answers an unexpected exception 500 with a generic
  JSON body — never exception text, which could carry request data or a secret — and a logged
  traceback.
- `timeout_middlewares`: aiohttp-middlewares' `timeout_middleware`, once per route family, so a
  handler's time stays under nginx's `proxy_read_timeout` (60 s, nginx/hobotnica.conf) and the
  answer is the daemon's, not nginx's: webhooks `WEBHOOK_SECONDS`, well inside the 10 seconds
  GitHub waits (answered 503 with a body GitHub shows on the delivery's page); the API
  `API_SECONDS` (above one GitHub call's 30 s client timeout) and pages `PAGE_SECONDS`, both
  answered 504. The live log stream is exempt: it ends by itself (`runner.web.live`). A file
  (a build's log) is sent after its handler returned, so its download is not cut either.
- `shield_middleware` (aiohttp-middlewares, for POST, PUT, PATCH and DELETE): a change runs
  to its end once its handler started, even when the client disconnects (the server cancels
  the handlers of a gone client: `handler_cancellation`) or its time runs out and it was
  answered 504 already. A registration, a secret, a cancel or a re-run, a webhook: made whole or
  not at all, never cut off between two of its steps.
- `outlived_middleware`, inside the shield: a change that ended after its client stopped
  waiting says so in the log, with the status it ended with (2xx: made; otherwise: not made).
- `client_middleware`: who is asking, and how. Behind nginx the peer is nginx, so the
  `X-Forwarded-For`, `-Proto` and `-Host` headers are read — but only when the peer is one of
  `server.trusted_proxies`: anyone else could write anything into them. aiohttp-remotes'
  `XForwardedFiltered` reads them: the client is the nearest address in `X-Forwarded-For` that
  is not a trusted proxy (so several nginx hops in front of several nodes give the browser's
  address, and an address the client wrote itself is never taken), and the request's scheme
  and host become the ones the browser used (`request.secure` for `Secure` cookies,
  `request.host` for the same-origin check). Headers it cannot read (a proxy on the client's
  side that writes `unknown`) leave the request as it came, with a warning; they are not
  refused. The client is bound as `client` into the log context and kept for the access log
  (`CLIENT`).
"""

import ipaddress
import re
import time
import warnings
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_middlewares.constants import NON_IDEMPOTENT_METHODS
from aiohttp_middlewares.error import error_context
from aiohttp_middlewares.error import error_middleware as family_error_middleware
from aiohttp_middlewares.shield import shield_middleware as non_idempotent_shield
from aiohttp_middlewares.timeout import timeout_middleware
from aiohttp_remotes import XForwardedFiltered
from aiohttp_remotes.exceptions import IPAddress

from runner.core.errors import StoreUnavailable

log = structlog.get_logger(logger_name="hobotnica.http")

# The caller's address as `client_middleware` decided (the access log reads it).
CLIENT = web.RequestKey("client", str)
# The status the client was answered with, when an error handler answered it.
ANSWERED = web.RequestKey("answered", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = re.compile(r"/api/")
WEBHOOKS = re.compile(r"/webhooks/")
# What each family's timeout leaves alone (`re.match`: anchored at the path's start).
NOT_API = re.compile(r"(?!/api/)")
NOT_WEBHOOKS = re.compile(r"(?!/webhooks/)")
NOT_PAGES = re.compile(r"/api/|/webhooks/|/builds/[0-9]+/events$")

WEBHOOK_SECONDS = 8.0
API_SECONDS = 50.0
PAGE_SECONDS = 30.0


def error_middleware(*, api_errors: Handler) -> Middleware:
    # It keeps the error under a plain string key, which aiohttp warns about once per process.
    warnings.filterwarnings(
        "ignore", category=web.NotAppKeyWarning, module=r"aiohttp_middlewares\.error"
    )
    return family_error_middleware(
        default_handler=_noting_answer(_page_error),
        config={API: _noting_answer(api_errors), WEBHOOKS: _noting_answer(_webhook_error)},
    )


def _noting_answer(family_error: Handler) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = await family_error(request)
        request[ANSWERED] = response.status
        return response

    return answer


async def _page_error(request: web.Request) -> web.StreamResponse:
    with error_context(request) as context:
        error = context.err
    if isinstance(error, web.HTTPException):
        raise error
    if isinstance(error, StoreUnavailable):
        return web.Response(
            status=503,
            text="the store cannot write now (its disk is full?); nothing was changed\n",
            headers={"Retry-After": "60"},
        )
    if isinstance(error, TimeoutError):
        return web.Response(status=504, text="this took too long; try again in a moment\n")
    log.error("unhandled error", method=request.method, path=request.path, exc_info=error)
    return web.json_response({"error": "internal error"}, status=500)


async def _webhook_error(request: web.Request) -> web.StreamResponse:
    with error_context(request) as context:
        error = context.err
    if isinstance(error, web.HTTPException):
        raise error
    if isinstance(error, TimeoutError):
        # GitHub shows this body on the delivery's page. The delivery goes on being stored (or
        # fails whole): one transaction, shielded. Redelivering it is safe either way.
        log.warning(
            "webhook not answered in time",
            delivery_id=request.headers.get("X-GitHub-Delivery", "")[:100],
            seconds=WEBHOOK_SECONDS,
        )
        message = (
            f"not answered within {WEBHOOK_SECONDS:g} s; the delivery is stored whole or not at "
            "all: redeliver it (one already stored is answered 200, duplicate)"
        )
        return web.json_response({"error": message}, status=503)
    log.error("unhandled webhook error", method=request.method, path=request.path, exc_info=error)
    return web.json_response({"error": "internal error"}, status=500)


def timeout_middlewares() -> list[Middleware]:
    """One per route family; the seconds are read when the app is made (tests shorten them)."""
    return [
        timeout_middleware(WEBHOOK_SECONDS, ignore={NOT_WEBHOOKS}),
        timeout_middleware(API_SECONDS, ignore={NOT_API}),
        timeout_middleware(PAGE_SECONDS, ignore={NOT_PAGES}),
    ]


def shield_middleware() -> Middleware:
    return non_idempotent_shield(methods=NON_IDEMPOTENT_METHODS)


def outlived_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in NON_IDEMPOTENT_METHODS:
            return await handler(request)
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except Exception as error:
            status = getattr(error, "status", 500)
            raise
        finally:
            answered = request.get(ANSWERED)
            if answered is not None or request.transport is None:
                log.warning(
                    "request outlived its client",
                    method=request.method,
                    path=request.path,
                    status=status,
                    client_was="disconnected" if answered is None else f"answered {answered}",
                    duration_ms=round((time.monotonic() - started) * 1000, 2),
                )

    return middleware


_FORWARDED = {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}


def client_middleware(*, trusted_proxies: tuple[str, ...]) -> Middleware:
    trusted = frozenset(ipaddress.ip_address(address) for address in trusted_proxies)
    forwarded = XForwardedFiltered(trusted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        async def as_seen(seen: web.Request) -> web.StreamResponse:
            client = request[CLIENT] = (seen.remote or "")[:64]
            with structlog.contextvars.bound_contextvars(client=client):
                return await handler(seen)

        if not _is_trusted(request.remote, trusted) or not _FORWARDED & request.headers.keys():
            return await as_seen(request)  # nothing forwarded: no copy of the request to make
        try:
            return await forwarded.middleware(request, as_seen)
        except web.HTTPBadRequest:
            if CLIENT in request:  # the handler's own answer, not the headers'
                raise
            log.warning(
                "unreadable X-Forwarded headers from a trusted proxy; the proxy stands for the "
                "client",
                proxy=request.remote,
            )
            return await as_seen(request)

    return middleware


def _is_trusted(peer: str | None, trusted: frozenset[IPAddress]) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer) in trusted
    except ValueError:
        return False
