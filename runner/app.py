"""`create_app(settings)`: the one place the daemon is wired together.

Each long-lived resource is one `web.AppKey` and one `cleanup_ctx` entry, in start-up order:
the store, the HTTP client session, the status reporter, the scheduler (after interrupted
builds are recovered), then the pages (session key, live-page watch, build control).
Shutdown runs in reverse; before it, `on_shutdown` ends the live log streams, which would
otherwise keep the server waiting. Nothing happens at import time.

Who may read what is decided per route (`Access.protect`), not by a global middleware:
webhooks and /health are never behind the sign-in, and routes with credentials of their own
(the REST API) are left alone.
"""

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from gidgethub.aiohttp import GitHubAPI

from runner.api import spec as api_spec
from runner.api.auth import Authenticator
from runner.api.builds import BuildHandlers
from runner.api.context import ApiContext
from runner.api.middleware import api_error, api_middleware
from runner.api.repositories import RepositoryHandlers
from runner.api.variables import VariableHandlers
from runner.core.errors import StoreUnavailable
from runner.core.git import Repositories
from runner.core.instance import is_gone, new_owner_id
from runner.core.links import build_url
from runner.core.metrics import CONTENT_TYPE, Metrics
from runner.core.models import Build
from runner.core.periodic import Periodic
from runner.core.settings import Project, Settings
from runner.executor.account import BuildAccount, tighten_data_dir
from runner.executor.cgroups import build_cgroup_name, end_now, find_cgroup_tree
from runner.executor.reaper import end_tree, marker_for
from runner.executor.sandbox import Bubblewrap, Sandbox
from runner.executor.worker import BuildWorker
from runner.intake.catchup import DeliveryCatchUp
from runner.intake.handler import MAX_BODY_BYTES, Intake, WebhookTarget
from runner.registrations.github_access import GitHubAccess
from runner.registrations.registrations import Registrations
from runner.reporting.reporter import GitHubStatuses, LoggedStatuses, StatusReporter, StatusRouter
from runner.scheduling.control import BuildControl
from runner.scheduling.free_space import FreeSpace
from runner.scheduling.scheduler import Scheduler
from runner.store import PENDING_HOLD, RecoveredBuild, Store, open_store
from runner.store.projects import ProjectDirectory
from runner.store.retention import INTERVAL as RETENTION_INTERVAL
from runner.store.retention import Retention
from runner.web.auth import Access
from runner.web.badge import BadgeView
from runner.web.builds import BuildViews
from runner.web.catalog import RepositoryCatalog
from runner.web.live import BuildWatch, LiveLog
from runner.web.middleware import (
    client_middleware,
    error_middleware,
    outlived_middleware,
    shield_middleware,
    timeout_middlewares,
)
from runner.web.pages import PageViews
from runner.web.rendering import Renderer
from runner.web.sessions import load_session_key
from runner.web.signin import SignIn

log = structlog.get_logger(logger_name="hobotnica")

# How long shutdown waits for the outbox to empty, so final statuses reach GitHub.
STATUS_FLUSH_TIMEOUT = 10.0


@dataclass
class Lifecycle:
    ready: bool = False
    draining: bool = False
    # Set by `serve` once the drain is over (or cut short): builds still running are interrupted.
    drain_done: bool = False


SETTINGS = web.AppKey("settings", Settings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
PROJECTS = web.AppKey("projects", ProjectDirectory)
STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REPORTER = web.AppKey("reporter", StatusReporter)
SCHEDULER = web.AppKey("scheduler", Scheduler)
INTAKE = web.AppKey("intake", Intake)
OWNER = web.AppKey("owner", str)
METRICS = web.AppKey("metrics", Metrics)
REPOSITORIES = web.AppKey("repositories", Repositories)
GITHUB = web.AppKey("github", GitHubAPI)
RETENTION = web.AppKey("retention", Retention)
CATCH_UP = web.AppKey("catch_up", DeliveryCatchUp)
GITHUB_ACCESS = web.AppKey("github_access", GitHubAccess)
REGISTRATIONS = web.AppKey("registrations", Registrations)

# How often the registrations job wakes: clones to resume, access checks that are due.
ACCESS_CHECK_POLL = 300.0
ACCESS = web.AppKey("access", Access)
RENDERER = web.AppKey("renderer", Renderer)
WATCH = web.AppKey("watch", BuildWatch)
CONTROL = web.AppKey("control", BuildControl)
SESSION_KEY = web.AppKey("session_key", bytes)
FREE_SPACE = web.AppKey("free_space", FreeSpace)

# While the store cannot write, how often a small write checks whether it can again.
STORE_PROBE_INTERVAL = 2.0


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            client_middleware(trusted_proxies=settings.server.trusted_proxies),
            error_middleware(api_errors=api_error),
            *timeout_middlewares(),
            shield_middleware(),
            outlived_middleware(),
            api_middleware(),
        ],
    )
    app[SETTINGS] = settings
    app[LIFECYCLE] = Lifecycle()
    app[OWNER] = new_owner_id()
    app[METRICS] = Metrics()
    access = app[ACCESS] = Access(
        settings.ui, secure_cookies=settings.server.public_url.startswith("https://")
    )
    app[RENDERER] = Renderer(access, builds_paused=lambda: _builds_paused(app))
    app.cleanup_ctx.extend(
        [_store, _http_session, _reporter, _scheduler, _pages, _background_jobs, _ready]
    )
    app.on_shutdown.append(_end_live_streams)
    # Never behind a sign-in: GitHub signs its webhooks, and health checks are anonymous.
    app.router.add_post("/webhooks/github", _webhook)
    app.router.add_post("/webhooks/{uid:[A-Za-z0-9_-]{22,64}}", _repository_webhook)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", access.protect(_metrics))
    app.router.add_routes(app[RENDERER].routes())
    app.router.add_routes(SignIn(access, app[RENDERER]).routes())
    app.router.add_routes(api_spec.routes())
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app[STORE] = open_store(settings)
    app[FREE_SPACE] = FreeSpace(settings.data_dir, settings.min_free)
    app[SESSION_KEY] = load_session_key(settings.data_dir)
    app[PROJECTS] = ProjectDirectory(settings, app[STORE], own_secrets=[app[SESSION_KEY]])
    yield
    await app[STORE].close()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[HTTP] = session
        app[GITHUB_ACCESS] = GitHubAccess(session, api_url=app[SETTINGS].github.api_url)
        yield


async def _reporter(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    token = settings.github.token
    if token:
        app[GITHUB] = GitHubAPI(
            app[HTTP], "hobotnica", oauth_token=token, base_url=settings.github.api_url
        )
        default: GitHubStatuses | LoggedStatuses = GitHubStatuses(app[GITHUB])
    else:
        log.warning(
            "no GitHub token configured: commit statuses of the config's projects are written "
            "to this log, not posted (set github.token or HOBOTNICA_GITHUB_TOKEN)"
        )
        default = LoggedStatuses()

    async def registered_token(repository: str) -> str | None:
        return await app[STORE].status_token(repository)

    github = StatusRouter(
        default,
        session=app[HTTP],
        api_url=settings.github.api_url,
        is_configured=lambda repository: app[PROJECTS].find(repository) is not None,
        registered_token=registered_token,
        on_token_rejected=lambda repository: app[REGISTRATIONS].token_rejected(repository),
    )
    reporter = StatusReporter(
        app[STORE],
        github,
        public_url=settings.server.public_url,
        is_local=app[PROJECTS].is_local,
        owner=app[OWNER],
        is_gone=lambda other: is_gone(other, me=app[OWNER]),
        metrics=app[METRICS],
        per_minute=settings.github.statuses_per_minute,
    )
    app[REPORTER] = reporter
    reporter.start()
    yield
    if not await reporter.flush(STATUS_FLUSH_TIMEOUT):
        log.warning("statuses left in the outbox at shutdown; they are sent on the next start")
    await reporter.close()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store, reporter = app[STORE], app[REPORTER]
    owner = app[OWNER]

    def owner_is_gone(other: str | None) -> bool:
        return is_gone(other, me=owner)

    cgroups, where = await asyncio.to_thread(find_cgroup_tree, settings.server.public_url)
    if cgroups is None:
        log.warning(
            "builds get no cgroup of their own: no memory or process limits; a build is ended "
            "by its process group, its marker and the sandbox",
            reason=where,
        )
    else:
        log.info("builds run in cgroups of their own", where=where)
    account = None
    if settings.builds.user is not None:
        account = BuildAccount(settings.builds.user, setpriv=shutil.which("setpriv") or "setpriv")
        await asyncio.to_thread(tighten_data_dir, settings.data_dir)
        log.info("builds run as another user", user=settings.builds.user.name)

    async def on_recovered(recovered: list[RecoveredBuild]) -> None:
        for build in recovered:
            log.warning(
                "recovered an interrupted build", build_id=build.id, requeued=build.requeued
            )
            # Its processes may have outlived the daemon that started them.
            if cgroups is not None:
                left = cgroups.existing(build_cgroup_name(build.id, build.attempt))
                if left is not None:
                    await asyncio.to_thread(end_now, left)
            marker = marker_for(build_url(settings.server.public_url, build.id), build.attempt)
            for process in await end_tree(None, marker, settings.builds.kill_grace):
                log.warning(
                    "ended a process left by an interrupted build",
                    build_id=build.id,
                    pid=process.pid,
                    command=process.command,
                )
        reporter.wake()

    await on_recovered(await store.recover_interrupted(owner_is_gone))

    def on_finished() -> None:
        reporter.wake()
        scheduler.wake()
        _poke_live_pages(app)

    def on_started() -> None:
        # Their "Running" states are held a moment before they are due.
        reporter.wake_at(time.time() + PENDING_HOLD)
        _poke_live_pages(app)

    def on_builds_queued() -> None:
        # Their `pending` states are held a moment: no need to look at the outbox before.
        reporter.wake_at(time.time() + PENDING_HOLD)
        scheduler.wake()

    app[REPOSITORIES] = Repositories(
        settings.data_dir, token=settings.github.token, inherited_env=settings.inherited_env
    )
    worker = BuildWorker(
        settings=settings,
        store=store,
        projects=app[PROJECTS],
        repositories=app[REPOSITORIES],
        sandbox=make_sandbox(settings),
        owner=owner,
        metrics=app[METRICS],
        on_finished=on_finished,
        on_credentials_refused=lambda repository: app[REGISTRATIONS].token_rejected(repository),
        cgroups=cgroups,
        account=account,
    )
    scheduler = Scheduler(
        store,
        worker.run,
        concurrency=settings.builds.concurrency,
        owner=owner,
        is_gone=owner_is_gone,
        on_recovered=on_recovered,
        on_started=on_started,
        shortage=app[FREE_SPACE].shortage,
    )
    app[SCHEDULER] = scheduler
    intake = Intake(
        settings=settings,
        store=store,
        find_project=app[PROJECTS].find,
        on_builds_queued=on_builds_queued,
        secret=settings.github.webhook_secret,
        metrics=app[METRICS],
        stop_build=lambda build_id, reason: scheduler.cancel(build_id, reason),
    )
    app[INTAKE] = intake
    app[REGISTRATIONS] = Registrations(
        store=store,
        repositories=app[REPOSITORIES],
        projects=app[PROJECTS],
        access=app[GITHUB_ACCESS],
        owner=owner,
        is_gone=owner_is_gone,
        stop_build=scheduler.cancel,
        access_check_interval=settings.github.access_check_interval,
    )
    scheduler.start()
    reporter.wake()
    await app[REGISTRATIONS].resume_clones()
    yield
    await app[REGISTRATIONS].close()
    drain_timeout = 0.0 if app[LIFECYCLE].drain_done else settings.builds.drain_timeout
    await scheduler.close(timeout=drain_timeout)
    if cgroups is not None:
        await asyncio.to_thread(cgroups.release)


async def _pages(app: web.Application) -> AsyncIterator[None]:
    """The pages and what they need: the session key, the live-page watch, build control."""
    settings, store, access = app[SETTINGS], app[STORE], app[ACCESS]
    access.use_session_key(app[SESSION_KEY])
    catalog = RepositoryCatalog(settings, store, app[PROJECTS])
    watch = app[WATCH] = BuildWatch(store)
    scheduler, reporter = app[SCHEDULER], app[REPORTER]

    def on_changed() -> None:
        reporter.wake()
        scheduler.wake()
        watch.poke()

    control = app[CONTROL] = BuildControl(
        store, stop_running=scheduler.cancel, on_changed=on_changed
    )
    renderer = app[RENDERER]
    live = LiveLog(settings.data_dir, store, watch, catalog)
    build_views = BuildViews(settings, store, catalog, renderer, access, control, live)
    app.router.add_routes(build_views.routes())
    _add_api_routes(app, build_views.describe_all)
    app.router.add_routes(PageViews(store, catalog, renderer, access).routes())
    app.router.add_routes(BadgeView(store, catalog, access).routes())
    watch.start()
    yield
    await watch.close()


def _poke_live_pages(app: web.Application) -> None:
    if WATCH in app:
        app[WATCH].poke()


async def _end_live_streams(app: web.Application) -> None:
    """Before the server waits for open requests: live streams would never end by themselves."""
    if WATCH in app:
        app[WATCH].end_streams()


def _add_api_routes(
    app: web.Application,
    describe_builds: Callable[[Sequence[Build]], Awaitable[list[dict[str, Any]]]],
) -> None:
    context = ApiContext(
        settings=app[SETTINGS],
        store=app[STORE],
        access=app[GITHUB_ACCESS],
        auth=Authenticator(app[GITHUB_ACCESS]),
        registrations=app[REGISTRATIONS],
        projects=app[PROJECTS],
        repositories=app[REPOSITORIES],
        describe_builds=describe_builds,
        queue_builds=app[INTAKE].record,
        control=app[CONTROL],
    )
    for handlers in (RepositoryHandlers, VariableHandlers, BuildHandlers):
        app.router.add_routes(handlers(context).routes())


async def _background_jobs(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[RETENTION] = Retention(app[STORE], settings.data_dir, settings.builds, app[REPOSITORIES])
    jobs = [
        Periodic("retention", app[RETENTION].run_once, RETENTION_INTERVAL),
        Periodic(
            "registrations",
            app[REGISTRATIONS].look_after_registrations,
            min(ACCESS_CHECK_POLL, settings.github.access_check_interval),
        ),
    ]
    if GITHUB in app and settings.github.catch_up:
        app[CATCH_UP] = DeliveryCatchUp(app[STORE], app[GITHUB])
        jobs.append(Periodic("catch-up", app[CATCH_UP].run_once, settings.github.catch_up_interval))
    jobs.append(Periodic("store-recovery", StoreRecovery(app).run_once, STORE_PROBE_INTERVAL))
    for job in jobs:
        job.start()
    yield
    for job in jobs:
        await job.close()


class StoreRecovery:
    """While the store cannot write (a full disk), try a small write now and then; once writes
    succeed again (this probe's or any other), say so, start what waited, and ask GitHub for the
    deliveries intake had to refuse meanwhile."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._failures_seen = 0

    async def run_once(self) -> None:
        app, store = self._app, self._app[STORE]
        if not store.writable:
            with contextlib.suppress(StoreUnavailable):
                await store.probe_write()
        failures = store.write_failures
        if not store.writable or failures == self._failures_seen:
            return
        self._failures_seen = failures
        log.warning("the store writes again", failed_writes=failures)
        app[SCHEDULER].wake()
        app[REPORTER].wake()
        if CATCH_UP in app:
            await app[CATCH_UP].run_once()


async def _ready(app: web.Application) -> AsyncIterator[None]:
    app[LIFECYCLE].ready = True
    yield
    app[LIFECYCLE].ready = False


async def _webhook(request: web.Request) -> web.Response:
    return await request.app[INTAKE].handle(request)


async def _repository_webhook(request: web.Request) -> web.Response:
    """A registered repository's own webhook: its own secret, and it builds only itself."""
    uid = request.match_info["uid"]
    registered = await request.app[STORE].registration_by_webhook(uid)
    if registered is None or registered.status == "disabled":
        return web.json_response({"error": "no such webhook"}, status=404)
    project = await request.app[PROJECTS].registered_project(registered)
    wanted = registered.repository.lower()

    def only_itself(repository: str) -> Project | None:
        return project if repository.lower() == wanted else None

    target = WebhookTarget(registered.webhook_secret, only_itself, records_hook=False)
    return await request.app[INTAKE].handle(request, target)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    for state, count in (await request.app[STORE].state_counts()).items():
        metrics.queue.labels(state).set(count)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _health(request: web.Request) -> web.Response:
    """200 while this daemon takes webhooks; 503 when a proxy should send them elsewhere."""
    app = request.app
    lifecycle = app[LIFECYCLE]
    if lifecycle.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not lifecycle.ready:
        return web.json_response({"status": "starting"}, status=503)
    if not app[STORE].writable:
        return web.json_response(
            {"status": "store unavailable", "reason": "the store cannot write (disk full?)"},
            status=503,
        )
    answer = {"status": "ok"}
    if reason := app[FREE_SPACE].shortage():
        answer["builds"] = f"paused: {reason}"  # webhooks are still taken; builds wait
    return web.json_response(answer)


def _builds_paused(app: web.Application) -> str | None:
    """Why builds wait, for the banner on every page (None: they do not)."""
    return app[FREE_SPACE].shortage() if FREE_SPACE in app else None


def make_sandbox(settings: Settings) -> Sandbox:
    if settings.builds.sandbox == "bubblewrap":
        hidden = (settings.config_path.resolve(),) if settings.config_path else ()
        return Bubblewrap(data_dir=settings.data_dir, hidden_files=hidden)
    return Sandbox()


def begin_drain(app: web.Application) -> None:
    """SIGTERM: answer 503 on /health, start no new builds, keep taking webhooks."""
    app[LIFECYCLE].draining = True
    app[SCHEDULER].stop_claiming()
