"""`create_app(settings)`: the one place the daemon is wired together.

Each long-lived resource is one `web.AppKey` and one `cleanup_ctx` entry, in start-up order:
the store, the HTTP client session and the registrations, the status reporter, the scheduler
with the executor (after interrupted builds are recovered), the pages, the background jobs.
Shutdown runs in reverse; before it, `on_shutdown` ends the live log streams, which would
otherwise keep the server waiting. Nothing happens at import time.

The stages do not call each other: each learns what the store committed from its
announcements (`runner.store.announcements`). What is wired here are dependencies, passed as
the objects (or bound methods) that provide them. Every background loop belongs to one
`BackgroundJobs`.

Who may read what is decided per route (`Access.protect`), not by a global middleware:
webhooks and /health are never behind the sign-in, and routes with credentials of their own
(the REST API) are left alone.
"""

from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from runner.api import spec as api_spec
from runner.api.auth import Authenticator
from runner.api.builds import BuildHandlers
from runner.api.context import ApiContext
from runner.api.middleware import api_error, api_middleware
from runner.api.repositories import RepositoryHandlers
from runner.api.variables import VariableHandlers
from runner.core.background import BackgroundJobs
from runner.core.git import Repositories
from runner.core.github_identity import DaemonToken, GitHubApp, GitHubIdentity
from runner.core.instance import Instance
from runner.core.metrics import Metrics
from runner.core.settings import Settings
from runner.executor.host import BuildHost
from runner.executor.prefetch import Prefetcher
from runner.executor.sandbox import sandbox_for
from runner.executor.worker import BuildWorker
from runner.intake.catchup import DeliveryCatchUp, token_client
from runner.intake.handler import MAX_BODY_BYTES, Intake
from runner.intake.outage import PROBE_INTERVAL, StoreRecovery
from runner.registrations.github_access import GitHubAccess
from runner.registrations.installations import Installations, registered_by_installation
from runner.registrations.registrations import Registrations
from runner.reporting.checks import CheckRuns
from runner.reporting.notifications import Notifier
from runner.reporting.reporter import StatusReporter, StatusRouter, daemon_statuses
from runner.scheduling.control import BuildControl
from runner.scheduling.free_space import FreeSpace
from runner.scheduling.scheduled_builds import POLL as SCHEDULE_POLL
from runner.scheduling.scheduled_builds import ScheduledBuilds
from runner.scheduling.scheduler import Scheduler
from runner.store import Store, open_store
from runner.store.projects import ProjectDirectory
from runner.store.retention import INTERVAL as RETENTION_INTERVAL
from runner.store.retention import Retention
from runner.web.all_builds import AllBuilds
from runner.web.auth import Access
from runner.web.badge import BadgeView
from runner.web.build_facts import BuildFactsReader
from runner.web.builds import BuildViews
from runner.web.catalog import RepositoryCatalog
from runner.web.live import BuildWatch, LiveLog
from runner.web.log_files import LogFiles
from runner.web.middleware import (
    client_middleware,
    error_middleware,
    outlived_middleware,
    shield_middleware,
    timeout_middlewares,
)
from runner.web.operations import Lifecycle, Operations
from runner.web.pages import PageViews
from runner.web.rendering import Renderer
from runner.web.sessions import KEY_BYTES as SESSION_KEY_BYTES
from runner.web.sessions import load_session_key
from runner.web.signin import SignIn

log = structlog.get_logger(logger_name="hobotnica")

# How long shutdown waits for the outbox to empty, so final statuses reach GitHub.
STATUS_FLUSH_TIMEOUT = 10.0
# How often the registrations job wakes: clones to resume, access checks that are due.
ACCESS_CHECK_POLL = 300.0

SETTINGS = web.AppKey("settings", Settings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
INSTANCE = web.AppKey("instance", Instance)
METRICS = web.AppKey("metrics", Metrics)
JOBS = web.AppKey("jobs", BackgroundJobs)
FREE_SPACE = web.AppKey("free_space", FreeSpace)
ACCESS = web.AppKey("access", Access)
RENDERER = web.AppKey("renderer", Renderer)
STORE = web.AppKey("store", Store)
SESSION_KEY = web.AppKey("session_key", bytes)
PROJECTS = web.AppKey("projects", ProjectDirectory)
REPOSITORIES = web.AppKey("repositories", Repositories)
HTTP = web.AppKey("http", aiohttp.ClientSession)
# Who Hobotnica is on GitHub: the daemon's token, or the App (absent: neither is configured).
IDENTITY = web.AppKey("identity", GitHubIdentity)
GITHUB_APP = web.AppKey("github_app", GitHubApp)
INSTALLATIONS = web.AppKey("installations", Installations)
GITHUB_ACCESS = web.AppKey("github_access", GitHubAccess)
REGISTRATIONS = web.AppKey("registrations", Registrations)
REPORTER = web.AppKey("reporter", StatusReporter)
SCHEDULER = web.AppKey("scheduler", Scheduler)
INTAKE = web.AppKey("intake", Intake)
WATCH = web.AppKey("watch", BuildWatch)
CONTROL = web.AppKey("control", BuildControl)
CATCH_UP = web.AppKey("catch_up", DeliveryCatchUp)
RETENTION = web.AppKey("retention", Retention)
SCHEDULED_BUILDS = web.AppKey("scheduled_builds", ScheduledBuilds)


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
    app[INSTANCE] = Instance.new(settings.server.node)
    app[METRICS] = Metrics(node=settings.server.node)
    app[JOBS] = BackgroundJobs()
    app[FREE_SPACE] = FreeSpace(settings.data_dir, settings.min_free)
    access = app[ACCESS] = Access(
        settings.ui, secure_cookies=settings.server.public_url.startswith("https://")
    )
    app[RENDERER] = Renderer(
        access, builds_paused=app[FREE_SPACE].shortage, git_url=settings.github.git_url
    )
    app.cleanup_ctx.extend(
        [_store, _github, _reporter, _scheduler, _pages, _background_jobs, _ready]
    )
    app.on_shutdown.append(_end_live_streams)
    app.router.add_routes(app[RENDERER].routes())
    app.router.add_routes(SignIn(access, app[RENDERER]).routes())
    app.router.add_routes(api_spec.routes())
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = app[STORE] = await open_store(settings)
    # Every node signs sessions with one key: the store's when nodes on other hosts share it.
    if store.is_shared:
        app[SESSION_KEY] = await store.installation_secret("session-key", SESSION_KEY_BYTES)
    else:
        app[SESSION_KEY] = load_session_key(settings.data_dir)
    app[PROJECTS] = ProjectDirectory(settings, store, own_secrets=[app[SESSION_KEY]])
    operations = Operations(app[LIFECYCLE], store, app[FREE_SPACE], app[METRICS], app[ACCESS])
    app.router.add_routes(operations.routes())
    yield
    await store.close()


async def _github(app: web.Application) -> AsyncIterator[None]:
    """Everything that talks to GitHub: who Hobotnica is there (a token or an App), the git
    mirrors that fetch with it, and the registrations."""
    settings = app[SETTINGS]
    github = settings.github
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[HTTP] = session
        app[GITHUB_ACCESS] = GitHubAccess(session, api_url=github.api_url)
        if github.app is not None:
            app_id, private_key = github.app
            app[GITHUB_APP] = app[IDENTITY] = GitHubApp(
                session,
                api_url=github.api_url,
                app_id=app_id,
                private_key=private_key,
                fallback_token=github.token,
                may_fall_back=app[PROJECTS].is_configured,
            )
            app[PROJECTS].current_secrets = app[GITHUB_APP].tokens
        elif github.token:
            app[IDENTITY] = DaemonToken(github.token)
        identity, inherited_env = app.get(IDENTITY), settings.inherited_env
        app[REPOSITORIES] = Repositories(
            settings.data_dir, identity=identity, inherited_env=inherited_env, http=session
        )
        instance = app[INSTANCE]
        registrations = app[REGISTRATIONS] = Registrations(
            store=app[STORE],
            repositories=app[REPOSITORIES],
            projects=app[PROJECTS],
            access=app[GITHUB_ACCESS],
            owner=instance.owner,
            is_gone=instance.is_gone,
            access_check_interval=github.access_check_interval,
        )
        if GITHUB_APP in app and github.auto_register:
            app[INSTALLATIONS] = Installations(
                app=app[GITHUB_APP],
                store=app[STORE],
                registrations=registrations,
                allowed_owners=settings.api.allowed_owners,
                is_configured=app[PROJECTS].is_configured,
            )
        yield
        if INSTALLATIONS in app:
            await app[INSTALLATIONS].close()
        await registrations.close()
        await app[REPOSITORIES].close()


async def _reporter(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    default = daemon_statuses(app[HTTP], settings.github.api_url, app.get(IDENTITY))
    github = StatusRouter(
        default,
        session=app[HTTP],
        api_url=settings.github.api_url,
        is_configured=app[PROJECTS].is_configured,
        registered_token=app[STORE].status_token,
        on_token_rejected=app[REGISTRATIONS].token_rejected,
        installed=registered_by_installation(app[STORE]) if GITHUB_APP in app else None,
    )
    instance = app[INSTANCE]
    reporter = app[REPORTER] = StatusReporter(
        app[STORE],
        github,
        public_url=settings.server.public_url,
        is_local=app[PROJECTS].is_local,
        owner=instance.owner,
        is_gone=instance.is_gone,
        metrics=app[METRICS],
        jobs=app[JOBS],
        per_minute=settings.github.statuses_per_minute,
        checks=_check_runs(app) if settings.github.report == "checks" else None,
    )
    reporter.start()
    notifier = Notifier(
        settings, app[STORE], app[PROJECTS], app[HTTP], _facts(app).tail, instance, app[JOBS]
    )
    notifier.start()
    yield
    await notifier.close()
    if not await reporter.flush(STATUS_FLUSH_TIMEOUT):
        log.warning("statuses left in the outbox at shutdown; they are sent on the next start")
    await reporter.close()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    settings, store, instance = app[SETTINGS], app[STORE], app[INSTANCE]
    shortage = app[FREE_SPACE].shortage
    host = await BuildHost.prepare(settings)
    await host.end_leftovers(await store.recover_interrupted(instance.is_gone))
    await host.end_orphans(store, instance.is_gone)
    worker = BuildWorker(
        settings=settings,
        store=store,
        projects=app[PROJECTS],
        repositories=app[REPOSITORIES],
        sandbox=sandbox_for(settings),
        owner=instance.owner,
        metrics=app[METRICS],
        on_credentials_refused=app[REGISTRATIONS].token_rejected,
        cgroups=host.cgroups,
        account=host.account,
    )
    scheduler = app[SCHEDULER] = Scheduler(
        store,
        worker.run,
        concurrency=settings.builds.concurrency,
        owner=instance.owner,
        is_gone=instance.is_gone,
        on_recovered=host.end_leftovers,
        jobs=app[JOBS],
        shortage=shortage,
        can_run=app[PROJECTS].can_build_here,
    )
    prefetcher = Prefetcher(app[REPOSITORIES], app[PROJECTS], app[JOBS], shortage=shortage)
    intake = app[INTAKE] = Intake(
        settings=settings,
        store=store,
        find_project=app[PROJECTS].find,
        registered_project=app[PROJECTS].registered_project,
        secret=settings.github.webhook_secret,
        metrics=app[METRICS],
        on_accepted=prefetcher.accepted,
        app=app.get(GITHUB_APP),
        on_installation=(app[INSTALLATIONS].installation_changed if INSTALLATIONS in app else None),
    )
    app.router.add_routes(intake.routes())
    scheduler.start()
    app[REPORTER].wake()
    await app[REGISTRATIONS].resume_clones()
    yield
    drain_timeout = 0.0 if app[LIFECYCLE].drain_done else settings.builds.drain_timeout
    await prefetcher.close()
    await scheduler.close(timeout=drain_timeout)
    await host.release()


async def _pages(app: web.Application) -> AsyncIterator[None]:
    """The pages and the REST API, and what they need: the live-page watch, build control."""
    settings, store, access = app[SETTINGS], app[STORE], app[ACCESS]
    access.use_session_key(app[SESSION_KEY])
    catalog = RepositoryCatalog(settings, store, app[PROJECTS])
    watch = app[WATCH] = BuildWatch(store, app[JOBS])
    control = app[CONTROL] = BuildControl(store)
    renderer = app[RENDERER]
    logs = LogFiles(settings.data_dir, store)
    live = LiveLog(logs, store, watch, catalog)
    build_views = BuildViews(settings, store, catalog, renderer, access, control, live, logs)
    app.router.add_routes(build_views.routes())
    context = ApiContext(
        settings=settings,
        store=store,
        access=app[GITHUB_ACCESS],
        auth=Authenticator(app[GITHUB_ACCESS]),
        registrations=app[REGISTRATIONS],
        projects=app[PROJECTS],
        repositories=app[REPOSITORIES],
        describe_builds=build_views.describe_all,
        queue_builds=app[INTAKE].record,
        control=control,
    )
    for handlers in (RepositoryHandlers, VariableHandlers, BuildHandlers):
        app.router.add_routes(handlers(context).routes())
    app.router.add_routes(PageViews(store, catalog, renderer, access).routes())
    app.router.add_routes(AllBuilds(store, catalog, renderer, access).routes())
    app.router.add_routes(BadgeView(store, catalog, access).routes())
    watch.start()
    yield
    await watch.close()


async def _end_live_streams(app: web.Application) -> None:
    """Before the server waits for open requests: live streams would never end by themselves."""
    if WATCH in app:
        app[WATCH].end_streams()


async def _background_jobs(app: web.Application) -> AsyncIterator[None]:
    settings, store, jobs = app[SETTINGS], app[STORE], app[JOBS]
    retention = app[RETENTION] = Retention(
        store, settings.data_dir, settings.builds, app[REPOSITORIES]
    )
    jobs.every("retention", RETENTION_INTERVAL, retention.run_once)
    registrations_every = min(ACCESS_CHECK_POLL, settings.github.access_check_interval)
    jobs.every("registrations", registrations_every, app[REGISTRATIONS].look_after_registrations)
    if INSTALLATIONS in app:
        jobs.every("installations", registrations_every, app[INSTALLATIONS].look_at_all)
    catch_up = None
    github = settings.github
    if (github.token or GITHUB_APP in app) and github.catch_up:
        token_api = token_client(app[HTTP], github)
        catch_up = app[CATCH_UP] = DeliveryCatchUp(store, token_api, app.get(GITHUB_APP))
        jobs.every("catch-up", github.catch_up_interval, catch_up.run_once)
    jobs.every("store-recovery", PROBE_INTERVAL, StoreRecovery(store, catch_up).run_once)
    scheduled = app[SCHEDULED_BUILDS] = ScheduledBuilds(
        settings,
        store,
        app[PROJECTS],
        app[REPOSITORIES],
        RepositoryCatalog(settings, store, app[PROJECTS]).default_branch,
        app[INTAKE].record,
    )
    jobs.every("schedules", SCHEDULE_POLL, scheduled.run_once)
    yield
    await jobs.close(
        "retention", "registrations", "installations", "catch-up", "store-recovery", "schedules"
    )


async def _ready(app: web.Application) -> AsyncIterator[None]:
    app[LIFECYCLE].ready = True
    yield
    app[LIFECYCLE].ready = False


def _facts(app: web.Application) -> BuildFactsReader:
    store = app[STORE]
    logs = LogFiles(app[SETTINGS].data_dir, store)
    return BuildFactsReader(store, logs, app[PROJECTS], app[REPOSITORIES])


def _check_runs(app: web.Application) -> CheckRuns:
    public_url = app[SETTINGS].server.public_url
    return CheckRuns(app[GITHUB_APP], public_url=public_url, facts=_facts(app))


def begin_drain(app: web.Application) -> None:
    """SIGTERM: answer 503 on /health, start no new builds, keep taking webhooks."""
    app[LIFECYCLE].draining = True
    app[SCHEDULER].stop_claiming()
