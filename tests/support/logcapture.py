"""The daemon's log as production writes it, captured for a test to search.

Tests do not call `runner.cli.logs.configure_logging` (it caches loggers for good), so structlog
writes to the `sys.stdout` it saw at import and the standard library's records go to pytest's
handlers. `daemon_log()` renders both, for the span of a `with`, into one buffer the way
production does: JSON lines, exceptions with their tracebacks. The previous configuration is
restored on exit.
"""

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog


@contextmanager
def daemon_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=buffer),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**previous)
