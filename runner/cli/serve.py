"""`hobotnica serve`: run the daemon in the foreground until SIGTERM, then drain and exit.

Drain (DESIGN.md): webhooks are still accepted and persisted, `/health` answers 503 so a proxy
moves away, no new build starts (queued ones stay queued for the next instance), running builds
finish up to `builds.drain_timeout`, and the outbox is flushed before exit. The daemon keeps
listening for at least `server.shutdown_grace` seconds, so requests a proxy still routes here
during its own reload are answered, not refused. A second SIGTERM or
SIGINT ends the wait: builds still running are interrupted (tests are re-queued for the next
start, deploys end `error`).
"""

import asyncio
import signal

import structlog
from aiohttp import web

from runner.app import LIFECYCLE, SCHEDULER, begin_drain, create_app
from runner.cli.systemd import Notifier
from runner.core.settings import Settings
from runner.scheduling.scheduler import Scheduler
from runner.web.access_log import access_logger, stdlib_access_logger

log = structlog.get_logger(logger_name="hobotnica")


async def serve(settings: Settings, notifier: Notifier) -> int:
    if settings.database_url or settings.server.node_name:
        # Several nodes log to one place: every line says which node wrote it.
        structlog.contextvars.bind_contextvars(node=settings.server.node)
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        # A gone client's handler is cancelled (as aiohttp's test server does): reads stop at
        # once, and changes are shielded from it (`runner.web.middleware.shield_middleware`).
        handler_cancellation=True,
        access_log_class=access_logger(),
        access_log=stdlib_access_logger(),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_address=True)
    try:
        await site.start()
    except OSError as error:
        log.error(
            "cannot listen",
            address=f"{settings.server.host}:{settings.server.port}",
            error=error.strerror,
        )
        # Builds it may have claimed meanwhile are handed back at once, not drained for 30 min.
        app[LIFECYCLE].drain_done = True
        await runner.cleanup()
        return 1
    if settings.github.uses_development_secret:
        log.warning(
            "USING THE DEVELOPMENT WEBHOOK SECRET FROM THE EXAMPLE CONFIG: anyone who has read the "
            "example can trigger builds. Not for production: set github.webhook_secret or "
            "HOBOTNICA_WEBHOOK_SECRET"
        )
    if settings.ui.has_development_user:
        log.warning(
            "THE EXAMPLE CONFIG'S DEVELOPMENT USER `dev` (PASSWORD `dev`) MAY SIGN IN: fine on "
            "loopback, never in production. Replace it in [ui] users (hobotnica hash-password)"
        )
    log.info(
        "hobotnica is listening",
        url=f"http://{settings.server.host}:{settings.server.port}",
        webhook_url=f"{settings.server.public_url}/webhooks/github",
        data_dir=str(settings.data_dir),
        event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        projects=[p.repository for p in settings.projects],
    )

    notifier.ready(f"taking webhooks on port {settings.server.port}")

    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    received = await signals.get()
    log.info(
        "draining", signal=signal.Signals(received).name, running_builds=app[SCHEDULER].running_ids
    )
    begin_drain(app)
    notifier.stopping(f"draining {len(app[SCHEDULER].running_ids)} running builds")
    # Keep answering for at least `shutdown_grace`, even with nothing to drain: after a switch,
    # nginx's old workers still send requests here until their keep-alive connections end.
    drained = asyncio.create_task(_drain(app[SCHEDULER], settings))
    second_signal = asyncio.create_task(signals.get())
    await asyncio.wait([drained, second_signal], return_when=asyncio.FIRST_COMPLETED)
    second_signal.cancel()
    app[LIFECYCLE].drain_done = True
    await runner.cleanup()
    log.info("stopped")
    return 0


async def _drain(scheduler: Scheduler, settings: Settings) -> None:
    await asyncio.gather(
        scheduler.wait_idle(settings.builds.drain_timeout),
        asyncio.sleep(settings.server.shutdown_grace),
    )
