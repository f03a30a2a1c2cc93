"""aiohttp's access log through structlog: one `request` line per HTTP request.

Each line has the method, the path (percent-encoded as sent, without the query string, which
may carry tokens; at most 200 characters), the status, the duration and the client (as
`client_middleware` decided from a trusted proxy's `X-Forwarded-For`; the peer for a request
no middleware saw, such as one aiohttp could not parse).
Webhook deliveries are left out: intake writes one canonical `delivery` line for each, with
more in it. Successful health checks, metric scrapes and static files are logged at debug
level, so a load balancer or Prometheus polling every few seconds does not drown the log.
"""

import logging

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from runner.web.middleware import CLIENT

log = structlog.get_logger(logger_name="hobotnica.access")

MAX_PATH = 200
QUIET_PATHS = ("/health", "/metrics")


def access_logger() -> type[AbstractAccessLogger]:
    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            path = request.raw_path.partition("?")[0]  # as sent: percent-encoded, no query
            if path.startswith("/webhooks/"):
                return
            quiet = response.status < 400 and (path in QUIET_PATHS or path.startswith("/static/"))
            (log.debug if quiet else log.info)(
                "request",
                method=request.method,
                path=path[:MAX_PATH],
                status=response.status,
                duration_ms=round(time * 1000, 2),
                client=request.get(CLIENT) or request.remote or "",
            )

    return AccessLogger


def stdlib_access_logger() -> logging.Logger:
    """What aiohttp wants handed over; the lines go through structlog instead."""
    return logging.getLogger("aiohttp.access")
