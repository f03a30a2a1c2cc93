"""`/api/repositories`: register, list, show, change and remove repositories."""

import asyncio
import secrets

from aiohttp import web

from runner.api.auth import github_unavailable, token_rejected
from runner.api.context import ApiContext, body, unprocessable
from runner.api.problems import ProblemError, not_found
from runner.core import cron
from runner.core.errors import ConfigError
from runner.core.names import is_branch_name, is_repository_name
from runner.core.notification_settings import checked_notify
from runner.registrations.github_access import WEBHOOK_EVENTS, GitHubUnavailable, TokenRejected
from runner.store import Registration

LIST_CONCURRENCY = 4


class RepositoryHandlers:
    def __init__(self, context: ApiContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        one = "/api/repositories/{owner}/{name}"
        return [
            web.get("/api/repositories", self.list),
            web.post("/api/repositories", self.register),
            web.get(one, self.show),
            web.patch(one, self.change),
            web.delete(one, self.remove),
        ]

    async def list(self, request: web.Request) -> web.Response:
        context = self._context
        caller = await context.auth.caller(request)
        everything = await context.store.registrations()

        # GitHub frowns on many concurrent requests from one token (secondary rate limits).
        asking = asyncio.Semaphore(LIST_CONCURRENCY)

        async def visible(repository: str) -> bool:
            try:
                async with asking:
                    return await context.access.repository(caller.token, repository) is not None
            except TokenRejected:
                raise token_rejected() from None
            except GitHubUnavailable:
                raise github_unavailable() from None

        allowed = await asyncio.gather(*(visible(r.repository) for r in everything))
        shown = [r for r, ok in zip(everything, allowed, strict=True) if ok]
        return web.json_response(
            {"repositories": [await context.repository_json(r) for r in shown]}
        )

    async def register(self, request: web.Request) -> web.Response:
        context = self._context
        wanted = body(request)
        repository = f"{wanted['owner']}/{wanted['name']}"
        if not is_repository_name(repository):
            raise unprocessable("not a valid repository name", "/name")
        caller, access = await context.auth.repository(request, repository, "WRITE")
        canonical = access.repository
        if not is_repository_name(canonical):  # GitHub's answer is input too
            raise ProblemError(502, "GitHub answered with an unusable repository name")
        if context.settings.project(canonical) is not None:
            raise ProblemError(409, "this repository is configured in the config file")
        if not context.settings.api.allows_owner(canonical.split("/")[0]):
            raise ProblemError(
                403,
                "this Hobotnica does not take registrations for this owner (api.allowed_owners)",
            )
        deploy_branch = wanted.get("deploy_branch")
        if deploy_branch is not None and not is_branch_name(deploy_branch):
            raise unprocessable("not a valid branch name", "/deploy_branch")
        jobs = wanted.get("jobs", ["test", "deploy"])
        if "test" not in jobs:
            raise unprocessable("jobs must include test: a deploy follows green tests", "/jobs")
        webhook_secret = secrets.token_urlsafe(32)
        registered = await context.store.register(
            Registration(
                repository=canonical,
                webhook_uid=secrets.token_urlsafe(24),
                webhook_secret=webhook_secret,
                default_branch=access.default_branch,
                deploy_branch=deploy_branch,
                deploy_enabled="deploy" in jobs,
                timeout=wanted.get("timeout"),
                registered_by=caller.login,
                token=caller.token,
            ),
        )
        if registered is None:
            raise ProblemError(409, "this repository is already registered")
        url = context.webhook_url(registered)
        hook_created, note = (
            False,
            (
                "create the webhook on GitHub yourself: this token may not administer the "
                "repository's hooks"
            ),
        )
        if access.allows("ADMIN"):
            try:
                hook = await context.access.create_hook(
                    caller.token, canonical, url=url, secret=webhook_secret
                )
            except (GitHubUnavailable, TokenRejected):
                note = "GitHub could not be asked to create the webhook; create it yourself"
            else:
                if hook.hook_id is not None:
                    await context.store.set_registration_hook(canonical, hook.hook_id)
                    hook_created, note = True, "GitHub webhook created"
                else:
                    note = f"create the webhook on GitHub yourself: {hook.reason}"
        context.registrations.clone_in_background(canonical)
        shown = {
            "repository": await context.repository_json(await context.registered(canonical)),
            "webhook": {
                "url": url,
                "secret": webhook_secret,
                "content_type": "json",
                "events": list(WEBHOOK_EVENTS),
                "hook_created": hook_created,
                "note": note,
            },
        }
        location = f"{context.public_url}/api/repositories/{canonical}"
        return web.json_response(shown, status=202, headers={"Location": location})

    async def show(self, request: web.Request) -> web.Response:
        registered = await self._context.path_registration(request, "READ")
        return web.json_response(await self._context.repository_json(registered))

    async def change(self, request: web.Request) -> web.Response:
        context = self._context
        registered = await context.path_registration(request, "WRITE")
        wanted = body(request)
        changes: dict[str, object] = {}
        if "jobs" in wanted:
            if "test" not in wanted["jobs"]:
                raise unprocessable("jobs must include test: a deploy follows green tests", "/jobs")
            changes["deploy_enabled"] = "deploy" in wanted["jobs"]
        if "deploy_branch" in wanted:
            branch = wanted["deploy_branch"]
            if branch is not None and not is_branch_name(branch):
                raise unprocessable("not a valid branch name", "/deploy_branch")
            changes["deploy_branch"] = branch
        if "timeout" in wanted:
            changes["timeout"] = wanted["timeout"]
        changes.update(_schedule_changes(wanted))
        if "notify" in wanted:
            try:
                changes["notify"] = checked_notify(wanted["notify"] or {})
            except ConfigError as error:
                raise unprocessable(str(error), "/notify") from None
        changed = await context.store.update_registration(registered.repository, changes)
        if changed is None:  # removed meanwhile
            raise not_found()
        return web.json_response(await context.repository_json(changed))

    async def remove(self, request: web.Request) -> web.Response:
        context = self._context
        registered = await context.path_registration(request, "WRITE")
        if registered.installation_id is not None:
            # The installation's next look would register it again at once.
            raise ProblemError(
                409,
                "the GitHub App's installation registered this repository: remove it from the "
                "installation on GitHub (the App's settings, Repository access) to retire it",
            )
        await context.registrations.remove(registered)
        return web.Response(status=204)


def _schedule_changes(wanted: dict[str, object]) -> dict[str, object]:
    """`schedule`, `schedule_timezone` and `schedule_branch`, checked as the config's are."""
    changes: dict[str, object] = {}
    if "schedule" in wanted:
        expression = wanted["schedule"]
        if expression is not None and not (
            isinstance(expression, str) and cron.is_valid_expression(expression)
        ):
            raise unprocessable(
                "not a cron expression (five fields: minute hour day-of-month month"
                ' day-of-week, e.g. "0 3 * * *")',
                "/schedule",
            )
        changes["schedule"] = expression
    if "schedule_timezone" in wanted:
        zone = wanted["schedule_timezone"]
        if not (isinstance(zone, str) and cron.is_time_zone(zone)):
            raise unprocessable(
                "not a time zone (e.g. UTC, Europe/Ljubljana)", "/schedule_timezone"
            )
        changes["schedule_timezone"] = zone
    if "schedule_branch" in wanted:
        branch = wanted["schedule_branch"]
        if branch is not None and not is_branch_name(branch):
            raise unprocessable("not a valid branch name", "/schedule_branch")
        changes["schedule_branch"] = branch
    return changes
