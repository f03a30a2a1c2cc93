"""`POST /webhooks/github`: verify, parse, plan, persist, and only then answer 2xx.

The order of checks is part of the interface (DESIGN.md): body over 25 MiB → 413; a bad or
missing signature → 401 (nothing parsed, nothing changed); missing GitHub headers or a body that
is not a JSON object → 400; a known delivery id → 200 and nothing new; `ping` → 200; otherwise
202 with the builds created, possibly none. The delivery is committed (fsync'd) before the answer,
so GitHub's one attempt is never lost. Builds run elsewhere; this handler never waits for one.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web

from runner.core.errors import StoreUnavailable
from runner.core.github_identity import GitHubApp
from runner.core.metrics import Metrics
from runner.core.models import BuildRequest
from runner.core.names import is_delivery_id, is_event_name, is_repository_name
from runner.core.settings import Project, Settings
from runner.intake.plan import LaneStop, PayloadError, ProjectLookup
from runner.intake.routing import plan_event
from runner.intake.signature import is_valid_signature
from runner.store import Delivery, DeliveryOutcome, RegisteredRepository, Store

# GitHub caps payloads at 25 MB; anything larger is not GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024
# A sender that trickles its body is not GitHub either; do not let it hold a connection forever.
# Inside the webhook's own handler timeout (`runner.web.middleware.WEBHOOK_SECONDS`), so a slow
# body is answered 408 before the handler's time is up.
BODY_READ_TIMEOUT = 5.0
JSON_ONLY = "body is not a JSON object; set the webhook's content type to application/json"
# Shown by GitHub beside a delivery refused because the store could not write it.
CANNOT_STORE = (
    "Hobotnica cannot store deliveries right now (its data directory is full or failing); "
    "this one changed nothing, and Hobotnica asks GitHub to redeliver it once it can"
)
STORE_RETRY_AFTER = "60"

log = structlog.get_logger(logger_name="hobotnica.intake")


@dataclass(frozen=True)
class WebhookTarget:
    """Whose webhook a request came through: the secret it is signed with and what it builds.

    The global `/webhooks/github` builds the config's projects; a registered repository's own
    `/webhooks/{uid}` builds that repository only, so one leaked secret exposes one repository.
    """

    secret: str = field(repr=False)
    find_project: ProjectLookup
    # Deliveries through it identify a hook that catch-up can list with the daemon's token.
    records_hook: bool = True


@dataclass
class Intake:
    settings: Settings
    store: Store
    find_project: ProjectLookup
    # A registration as a project, with its variables (`ProjectDirectory.registered_project`).
    registered_project: Callable[[RegisteredRepository], Awaitable[Project]]
    secret: str
    metrics: Metrics
    body_timeout: float = BODY_READ_TIMEOUT
    # Told of each build request written, once the answer is on the wire (the mirror fetches
    # its commit).
    on_accepted: Callable[[BuildRequest], None] = lambda _request: None
    # Installed as a GitHub App: it learns each repository's installation from the webhooks.
    app: GitHubApp | None = None
    # Told of each `installation` and `installation_repositories` delivery recorded; None:
    # installations register nothing (`github.auto_register` is off).
    on_installation: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        self._global = WebhookTarget(self.secret, self.find_project)

    async def handle(
        self, request: web.Request, target: WebhookTarget | None = None
    ) -> web.Response:
        started = time.monotonic()
        received_at = time.time()
        delivery_id = request.headers.get("X-GitHub-Delivery", "")
        target = target or self._global
        with structlog.contextvars.bound_contextvars(delivery_id=delivery_id[:100]):
            response, fields = await self._answer(request, received_at, target)
            self.metrics.delivery(fields.get("github_event", ""), fields["outcome"])
            log.info(
                "delivery",
                status=response.status,
                duration_ms=round((time.monotonic() - started) * 1000, 2),
                **fields,
            )
            return response

    def routes(self) -> list[web.RouteDef]:
        """The webhooks, never behind a sign-in: GitHub signs them. The global one builds the
        config's projects; `/webhooks/{uid}` is a registered repository's own."""
        return [
            web.post("/webhooks/github", self.handle),
            web.post("/webhooks/{uid:[A-Za-z0-9_-]{22,64}}", self._repository_webhook),
        ]

    async def _repository_webhook(self, request: web.Request) -> web.Response:
        """A registered repository's own webhook: its own secret, and it builds only itself."""
        registered = await self.store.registration_by_webhook(request.match_info["uid"])
        if registered is None or registered.status == "disabled":
            return web.json_response({"error": "no such webhook"}, status=404)
        project = await self.registered_project(registered)
        wanted = registered.repository.lower()

        def only_itself(repository: str) -> Project | None:
            return project if repository.lower() == wanted else None

        target = WebhookTarget(registered.webhook_secret, only_itself, records_hook=False)
        return await self.handle(request, target)

    async def _with_app_registration(
        self, payload: dict[str, Any], target: WebhookTarget, *, of_app: bool
    ) -> WebhookTarget:
        """The global webhook also builds what the App's installations registered, and tells
        the App which installation the repository is in (only a delivery through the App's own
        hook says so; a repository webhook's `installation` may be another App's)."""
        name = _repository_name(payload)
        installation_id = _installation_id(payload)
        if name is None:
            return target
        if of_app and installation_id is not None and self.app is not None:
            self.app.remember_installation(name, installation_id)
        if target.find_project(name) is not None:
            return target
        registered = await self.store.registration(name)
        if registered is None or registered.installation_id is None:
            return target
        if registered.status == "disabled":
            return target
        project = await self.registered_project(registered)
        wanted = registered.repository.lower()

        def configured_or_registered(repository: str) -> Project | None:
            if repository.lower() == wanted:
                return project
            return target.find_project(repository)

        return WebhookTarget(target.secret, configured_or_registered, records_hook=False)

    async def _stop(self, stops: tuple[LaneStop, ...]) -> list[int]:
        """Stop the queued and running builds of the lanes (a merge group destroyed, a fork's
        pull request closed while waiting): through the store, which the daemon running one
        reads on its next heartbeat."""
        stopped = []
        for build in await self.store.active_builds(limit=1000):
            stop = next((stop for stop in stops if stop.matches(build)), None)
            if stop is not None:
                await self.store.cancel_build(build.id, stop.reason)
                stopped.append(build.id)
        return stopped

    async def _rerun(
        self,
        builds: tuple[tuple[str, int], ...],
        commits: tuple[tuple[str, str], ...],
        asked_by: str,
    ) -> list[int]:
        """Run builds again (GitHub's Re-run buttons, pressed by `asked_by`); the new ids."""
        wanted = list(builds)
        for repository, sha in commits:  # the newest finished build of each lane of the commit
            newest: dict[tuple[str, str], int] = {}
            for listed in await self.store.list_builds(repository, limit=RERUN_LOOKBACK):
                if listed.request.sha == sha and listed.state.is_final:
                    newest.setdefault((listed.request.ref, listed.job.value), listed.id)
            wanted += [(repository, build_id) for build_id in sorted(newest.values())]
        new = []
        for repository, build_id in wanted:
            build = await self.store.get_build(build_id)
            if build is None or build.repository.lower() != repository.lower():
                continue  # a build of another repository is not this event's to run
            rerun = await self.store.rerun_build(build_id, asked_by)
            if rerun.build_id is not None:
                new.append(rerun.build_id)
            else:
                log.info("re-run refused", build_id=build_id, reason=rerun.refused)
        return new

    async def record(self, delivery: Delivery) -> DeliveryOutcome:
        """Persist a delivery (a webhook's, or a build started through the API). What it queued
        and whom it stopped, the store announces to the scheduler and the reporter."""
        return await self.store.record_delivery(delivery)

    async def _answer(
        self, request: web.Request, received_at: float, target: WebhookTarget
    ) -> tuple[web.Response, dict[str, Any]]:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _error(413, "payload larger than 25 MiB"), {"outcome": "rejected"}
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "payload larger than 25 MiB"), {"outcome": "rejected"}
        except TimeoutError:
            return _error(408, "request body not received in time"), {"outcome": "rejected"}

        if not is_valid_signature(body, request.headers.get("X-Hub-Signature-256"), target.secret):
            return _error(401, "missing or invalid X-Hub-Signature-256"), {"outcome": "rejected"}

        event = request.headers.get("X-GitHub-Event", "")
        delivery_id = request.headers.get("X-GitHub-Delivery", "")
        if not is_event_name(event) or not is_delivery_id(delivery_id):
            return _error(400, "missing or malformed X-GitHub-Event or X-GitHub-Delivery"), {
                "outcome": "rejected"
            }
        try:
            payload = orjson.loads(body)
        except (ValueError, RecursionError):  # bad UTF-8, bad JSON, over-long ints, deep nesting
            payload = None
        if not isinstance(payload, dict):
            return _error(400, JSON_ONLY), {
                "outcome": "rejected",
                "github_event": event,
            }

        hook_header = request.headers.get("X-GitHub-Hook-ID", "")
        is_hook_id = hook_header.isascii() and hook_header.isdigit() and len(hook_header) < 20
        # A GitHub App's hook is the App's, not the repository's (catch-up lists it as the App).
        of_app = request.headers.get("X-GitHub-Hook-Installation-Target-Type") == "integration"
        hook_id = hook_header if is_hook_id and target.records_hook and not of_app else None
        if target is self._global and self.app is not None:
            target = await self._with_app_registration(payload, target, of_app=of_app)
        return await self._accept(event, delivery_id, hook_id, payload, received_at, target)

    async def _accept(
        self,
        event: str,
        delivery_id: str,
        hook_id: str | None,
        payload: dict[str, Any],
        received_at: float,
        target: WebhookTarget,
    ) -> tuple[web.Response, dict[str, Any]]:
        fields: dict[str, Any] = {"github_event": event}
        stops: tuple[LaneStop, ...] = ()
        reruns: tuple[tuple[str, int], ...] = ()
        rerun_commits: tuple[tuple[str, str], ...] = ()
        asked_by = ""
        if event == "ping":
            requests: tuple[Any, ...] = ()
            outcome = "ping"
        elif event in INSTALLATION_EVENTS:
            requests = ()
            outcome = (
                "ignored: the registrations follow the App's installations"
                if self.on_installation is not None
                else "ignored: installations register nothing (github.auto_register is off)"
            )
        else:
            try:
                plan = await plan_event(
                    event,
                    payload,
                    delivery_id,
                    find_project=target.find_project,
                    settings=self.settings,
                )
            except PayloadError as error:
                return _error(400, str(error)), {**fields, "outcome": "rejected"}
            requests, stops = plan.requests, plan.stops
            reruns, rerun_commits, asked_by = plan.reruns, plan.rerun_commits, plan.asked_by
            outcome = "accepted" if requests else f"ignored: {plan.ignored}"
            if stops and not requests:
                outcome = "ignored: its builds are stopped"
            if reruns or rerun_commits:
                outcome = "ignored: its builds run again"
        delivery = Delivery(
            id=delivery_id,
            event=event,
            hook_id=hook_id,
            received_at=received_at,
            outcome=outcome,
            requests=requests,
            hook_repository=requests[0].repository if requests else None,
            stop_running=self.settings.builds.cancel_running,
        )
        try:
            recorded = await self.record(delivery)
        except StoreUnavailable as error:
            # Never 500: GitHub shows this text, and catch-up asks for the delivery again.
            response = _error(503, CANNOT_STORE)
            response.headers["Retry-After"] = STORE_RETRY_AFTER
            refused = {"outcome": "refused: store unavailable", "error": str(error)}
            return response, {**fields, **refused}
        if stops:  # again for a redelivery: a stop asked for twice stops once
            fields["stopped"] = await self._stop(stops)
        if recorded.duplicate:
            body = {"delivery": delivery_id, "duplicate": True, "builds": []}
            return web.json_response(body, status=200), {**fields, "outcome": "duplicate"}
        rerun = await self._rerun(reruns, rerun_commits, asked_by)
        if rerun:
            recorded_ids = [*recorded.build_ids, *rerun]
            fields["rerun"] = rerun
        else:
            recorded_ids = list(recorded.build_ids)
        installation_id = _installation_id(payload)
        if event in INSTALLATION_EVENTS and installation_id and self.on_installation:
            self.on_installation(installation_id)
        fields.update(outcome=outcome, builds=recorded_ids)
        if recorded.superseded_ids:
            fields["superseded"] = list(recorded.superseded_ids)
        answer: dict[str, Any] = {"delivery": delivery_id, "builds": recorded_ids}
        if event == "ping":
            return web.json_response({**answer, "ping": "pong"}, status=200), fields
        if not requests:
            answer["ignored"] = outcome.removeprefix("ignored: ")

        def tell_accepted() -> None:
            for build_request in requests:
                self.on_accepted(build_request)

        return _AnswerThen(answer, status=202, then=tell_accepted), fields


INSTALLATION_EVENTS = ("installation", "installation_repositories")
# "Re-run all checks" looks for the commit's builds among the repository's newest this many.
RERUN_LOOKBACK = 200


def _repository_name(payload: dict[str, Any]) -> str | None:
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    return name if isinstance(name, str) and is_repository_name(name) else None


def _installation_id(payload: dict[str, Any]) -> int | None:
    installation = payload.get("installation")
    found = installation.get("id") if isinstance(installation, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and 0 < found < 2**63:
        return found
    return None


class _AnswerThen(web.Response):
    """A JSON answer that calls `then` once it is written to the client's socket.

    What `then` starts (the mirror's fetch spawns git on the event loop) would otherwise run
    before aiohttp writes the answer, and GitHub would wait for it: 3 ms of a 4.5 ms answer. An
    answer never written (the client went away) starts nothing; the build's checkout fetches.
    """

    def __init__(self, body: dict[str, Any], *, status: int, then: Callable[[], None]) -> None:
        # The Content-Type `web.json_response` gives every other answer.
        super().__init__(
            body=orjson.dumps(body), status=status, content_type="application/json", charset="utf-8"
        )
        self._then = then

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        then, self._then = self._then, _nothing
        then()


def _nothing() -> None:
    pass


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
