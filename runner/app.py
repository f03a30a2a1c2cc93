"""`create_app(settings)`: the one place the daemon is wired together.

Each long-lived resource is one `web.AppKey` and one `cleanup_ctx` entry, in start-up order:
the store, the HTTP client session, the status reporter, then the scheduler (after interrupted
builds are recovered). Shutdown runs in reverse. Nothing happens at import time.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from gidgethub.aiohttp import GitHubAPI

from runner.api import spec as api_spec
from runner.api.auth import Authenticator
from runner.api.builds import BuildHandlers
from runner.api.context import ApiContext
from runner.api.github_access import GitHubAccess
from runner.api.middleware import api_middleware
from runner.api.repositories import RepositoryHandlers
from runner.api.variables import VariableHandlers
from runner.build.environment import build_url
from runner.build.git import Repositories
from runner.build.reaper import end_tree, marker_for
from runner.build.sandbox import Bubblewrap, Sandbox
from runner.build.worker import BuildWorker
from runner.catchup import DeliveryCatchUp
from runner.instance import is_gone, new_owner_id
from runner.metrics import CONTENT_TYPE, Metrics
from runner.periodic import Periodic
from runner.projects import ProjectDirectory
from runner.registrations import Registrations
from runner.reporter import GitHubStatuses, LoggedStatuses, StatusReporter, StatusRouter
from runner.retention import INTERVAL as RETENTION_INTERVAL
from runner.retention import Retention
from runner.scheduler import Scheduler
from runner.settings import Project, Settings
from runner.store import Delivery, DeliveryOutcome, RecoveredBuild, Store, registry
from runner.store.outbox import PENDING_HOLD
from runner.web.builds import BuildViews
from runner.web.middleware import client_middleware, error_middleware
from runner.webhooks.intake import MAX_BODY_BYTES, Intake, WebhookTarget

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
ACCESS = web.AppKey("access", GitHubAccess)
REGISTRATIONS = web.AppKey("registrations", Registrations)
BUILD_VIEWS = web.AppKey("build_views", BuildViews)
STATUS_ROUTER = web.AppKey("status_router", StatusRouter)

# How often the access-check job wakes to look for registrations due a check.
ACCESS_CHECK_POLL = 300.0


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            error_middleware(),
            client_middleware(trusted_proxies=settings.server.trusted_proxies),
            api_middleware(),
        ],
    )
    app[SETTINGS] = settings
    app[LIFECYCLE] = Lifecycle()
    app[OWNER] = new_owner_id()
    app[METRICS] = Metrics()
    app.cleanup_ctx.extend([_store, _http_session, _reporter, _scheduler, _background_jobs, _ready])
    app.router.add_post("/webhooks/github", _webhook)
    app.router.add_post("/webhooks/{uid:[A-Za-z0-9_-]{22,64}}", _repository_webhook)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_routes(api_spec.routes())
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app[STORE] = Store.in_data_dir(settings.data_dir)
    app[PROJECTS] = ProjectDirectory(settings, app[STORE])
    views = BuildViews(settings, app[STORE], app[PROJECTS])
    app[BUILD_VIEWS] = views
    app.router.add_routes(views.routes())
    yield
    await app[STORE].close()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[HTTP] = session
        app[ACCESS] = GitHubAccess(session, api_url=app[SETTINGS].github.api_url)
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
        registered = await app[STORE].transact(registry.get, repository)
        return None if registered is None else registered.token

    app[STATUS_ROUTER] = github = StatusRouter(
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

    async def on_recovered(recovered: list[RecoveredBuild]) -> None:
        for build in recovered:
            log.warning(
                "recovered an interrupted build", build_id=build.id, requeued=build.requeued
            )
            # Its processes may have outlived the daemon that started them.
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
    )
    scheduler = Scheduler(
        store,
        worker.run,
        concurrency=settings.builds.concurrency,
        owner=owner,
        is_gone=owner_is_gone,
        on_recovered=on_recovered,
        # Their "Running" states are held a moment before they are due.
        on_started=lambda: reporter.wake_at(time.time() + PENDING_HOLD),
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
        access=app[ACCESS],
        owner=owner,
        is_gone=owner_is_gone,
        stop_build=scheduler.cancel,
        access_check_interval=settings.github.access_check_interval,
        on_removed=app[STATUS_ROUTER].retire,
    )
    _add_api_routes(app, store, intake)
    scheduler.start()
    reporter.wake()
    await app[REGISTRATIONS].resume_clones()
    yield
    await app[REGISTRATIONS].close()
    drain_timeout = 0.0 if app[LIFECYCLE].drain_done else settings.builds.drain_timeout
    await scheduler.close(timeout=drain_timeout)


def _add_api_routes(app: web.Application, store: Store, intake: Intake) -> None:
    async def queue_builds(delivery: Delivery) -> DeliveryOutcome:
        outcome = await store.record_delivery(delivery)
        if outcome.build_ids:
            intake.on_builds_queued()
        return outcome

    context = ApiContext(
        settings=app[SETTINGS],
        store=store,
        access=app[ACCESS],
        auth=Authenticator(app[ACCESS]),
        registrations=app[REGISTRATIONS],
        projects=app[PROJECTS],
        repositories=app[REPOSITORIES],
        describe_build=app[BUILD_VIEWS].describe,
        queue_builds=queue_builds,
        stop_build=app[SCHEDULER].cancel,
    )
    for handlers in (RepositoryHandlers, VariableHandlers, BuildHandlers):
        app.router.add_routes(handlers(context).routes())


async def _background_jobs(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[RETENTION] = Retention(app[STORE], settings.data_dir, settings.builds, app[REPOSITORIES])
    jobs = [
        Periodic("retention", app[RETENTION].run_once, RETENTION_INTERVAL),
        Periodic(
            "access-check",
            app[REGISTRATIONS].check_access_once,
            min(ACCESS_CHECK_POLL, settings.github.access_check_interval),
        ),
    ]
    if GITHUB in app and settings.github.catch_up:
        app[CATCH_UP] = DeliveryCatchUp(app[STORE], app[GITHUB])
        jobs.append(Periodic("catch-up", app[CATCH_UP].run_once, settings.github.catch_up_interval))
    for job in jobs:
        job.start()
    yield
    for job in jobs:
        await job.close()


async def _ready(app: web.Application) -> AsyncIterator[None]:
    app[LIFECYCLE].ready = True
    yield
    app[LIFECYCLE].ready = False


async def _webhook(request: web.Request) -> web.Response:
    return await request.app[INTAKE].handle(request)


async def _repository_webhook(request: web.Request) -> web.Response:
    """A registered repository's own webhook: its own secret, and it builds only itself."""
    uid = request.match_info["uid"]
    registered = await request.app[STORE].transact(registry.by_webhook_uid, uid)
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
    lifecycle = request.app[LIFECYCLE]
    if lifecycle.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not lifecycle.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ok"})


def make_sandbox(settings: Settings) -> Sandbox:
    if settings.builds.sandbox == "bubblewrap":
        hidden = (settings.config_path.resolve(),) if settings.config_path else ()
        return Bubblewrap(data_dir=settings.data_dir, hidden_files=hidden)
    return Sandbox()


def begin_drain(app: web.Application) -> None:
    """SIGTERM: answer 503 on /health, start no new builds, keep taking webhooks."""
    app[LIFECYCLE].draining = True
    app[SCHEDULER].stop_claiming()
