"""Logging, configured once: JSON lines when stdout is not a terminal (systemd's journal), readable
console output on a terminal (`hobotnica serve --log-format` or `HOBOTNICA_LOG_FORMAT` overrides).

What an operator gets: one canonical `delivery` line per webhook (intake), one `build finished`
line per build (the worker: state, durations, queue wait, push → start), one `request` line per
other HTTP request (`runner.web.access_log`), and warnings and errors with their context.

Hobotnica's own lines take structlog's direct path (no `logging.LogRecord` per line: intake logs
one line per delivery, and that path is several times cheaper). The standard library's loggers
(aiohttp, gidgethub, asyncio) go through the same processors and renderer, so every line of the
daemon has one shape. Each module names itself with `structlog.get_logger(logger_name="…")`,
shown as `logger` like the standard library's names.
"""

import logging
import sys

import orjson
import structlog
from structlog.types import EventDict, WrappedLogger


def _json_line(event: EventDict, **_: object) -> str:
    return orjson.dumps(event, default=str).decode()


def _logger_name(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    if json is None:
        json = not sys.stdout.isatty()
    shared: list[structlog.types.Processor] = [
        _logger_name,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stdout.isatty(),
            # Never rich's tracebacks with locals: a local may hold a token or a secret.
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    exceptions: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info] if json else []
    )
    structlog.configure(
        processors=[*shared, *exceptions, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
