"""One fake GitHub for all tests: an aiohttp server on loopback that records every status post.

It answers `POST /repos/{owner}/{repo}/statuses/{sha}` like GitHub (201 and the status back), and
can be told to answer the next posts with other codes. Tests wait on conditions over what it
recorded, with a deadline, instead of sleeping. `hold(sha)` keeps the status posts for one commit
in flight (arrived, not answered) until the test releases them: the moment a daemon has sent a
status and not yet heard back.

For the REST API it also knows users: `add_user(token, login)` and `grant(login, repository,
permission)` make `POST /graphql` answer `viewer`, `repository { viewerPermission }` and
`organization { viewerCanAdminister }` as GitHub does (401 for an unknown token, a NOT_FOUND
error beside `data` for what the token cannot see), and `POST /repos/{owner}/{repo}/hooks`
creates a hook for an admin. `graphql_calls` counts the round trips. For the GitHub App, git over
HTTP and the Enterprise `app(prefix="/api/v3")`, see fake_github_app*.py and git_http.py.
"""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.fake_checks import FakeChecks
from tests.support.fake_github_app import FakeApp
from tests.support.fake_github_app_routes import AppEndpoints, record_requests, refuse_token
from tests.support.git_http import git_routes

WAIT_TIMEOUT = 60.0


@dataclass
class StatusPost:
    repository: str
    sha: str
    state: str
    context: str
    description: str
    target_url: str
    authorization: str


@dataclass
class HeldPosts:
    """Status posts for one commit that arrived and wait, unanswered, until `release()`."""

    sha: str
    arrived: list[dict[str, Any]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Answer the waiting posts, and let later ones through at once."""
        self.released.set()


@dataclass
class HookDelivery:
    """One entry of a hook's delivery log, and what GitHub would send again."""

    id: int
    guid: str
    event: str
    status_code: int
    delivered_at: str
    body: bytes
    installation_id: int | None = None
    repository_id: int | None = None

    def listed(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at,
            "redelivery": False,
            "duration": 0.1,
            "status": "OK" if 200 <= self.status_code < 300 else "failed to connect",
            "status_code": self.status_code,
            "event": self.event,
            "action": None,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
        }


@dataclass
class CreatedHook:
    id: int
    repository: str
    url: str
    secret: str
    events: list[str]
    content_type: str


@dataclass
class FakeGitHub(FakeChecks):
    statuses: list[StatusPost] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    # The hook delivery log (newest first, as GitHub lists it) and the redeliveries asked for.
    deliveries: list[HookDelivery] = field(default_factory=list)
    redelivery_requests: list[int] = field(default_factory=list)
    redeliver: Callable[[HookDelivery], Awaitable[int]] | None = None
    # The REST API's view of GitHub: token → login, (login, owner/name) → permission, and the
    # organisations each login administers. Repository names here are GitHub's spelling.
    users: dict[str, str] = field(default_factory=dict)
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)
    default_branches: dict[str, str] = field(default_factory=dict)
    org_admins: dict[str, set[str]] = field(default_factory=dict)
    hooks: dict[int, "CreatedHook"] = field(default_factory=dict)
    graphql_calls: int = 0
    graphql_down: bool = False
    holds: dict[str, HeldPosts] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # Kinds of request ("graphql", "hooks") whose answers wait until a test lets them go.
    _held: dict[str, asyncio.Event] = field(default_factory=dict)
    _arrived: dict[str, asyncio.Event] = field(default_factory=dict)
    app_auth: FakeApp | None = None
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    git_root: Path | None = None
    git_token: str | None = None
    git_authorizations: list[str] = field(default_factory=list)
    git_refused: list[tuple[str, str]] = field(default_factory=list)

    def enable_app(self) -> FakeApp:
        self.app_auth = FakeApp()
        return self.app_auth

    def hold_answers(self, kind: str) -> asyncio.Event:
        """From now on, answers to `kind` wait until the event returned is set."""
        self._arrived[kind] = asyncio.Event()
        gate = self._held[kind] = asyncio.Event()
        return gate

    async def arrived(self, kind: str) -> None:
        """Until a request of a held `kind` has arrived (and is being held)."""
        await self._arrived[kind].wait()

    async def _held_back(self, kind: str) -> None:
        if kind in self._held:
            self._arrived[kind].set()
            await self._held[kind].wait()

    def add_user(self, token: str, login: str) -> None:
        self.users[token] = login

    def grant(
        self, login: str, repository: str, permission: str, default_branch: str = "main"
    ) -> None:
        self.permissions[(login, repository)] = permission
        self.default_branches[repository] = default_branch

    def revoke(self, login: str, repository: str) -> None:
        self.permissions.pop((login, repository), None)

    def hold(self, sha: str) -> HeldPosts:
        """Keep the next status posts for `sha` in flight until the test releases them."""
        held = self.holds[sha] = HeldPosts(sha)
        return held

    async def wait_held(self, held: HeldPosts, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """Until a post for `held.sha` is in flight; its body."""
        await self.wait_until(lambda: bool(held.arrived), timeout)
        return held.arrived[0]

    def release_all(self) -> None:
        for held in self.holds.values():
            held.release()

    def app(self, prefix: str = "") -> web.Application:
        """REST under `prefix`, GraphQL beside it (`/api/v3` → `/api/graphql`), git at the root."""
        app = web.Application(middlewares=[record_requests(self, prefix)])
        app.router.add_post(prefix.removesuffix("/v3") + "/graphql", self._graphql)
        repo = prefix + "/repos/{owner}/{repo}"
        app.router.add_post(repo + "/hooks", self._create_hook)
        app.router.add_delete(repo + "/hooks/{hook_id}", self._delete_hook)
        app.router.add_post(repo + "/statuses/{sha}", self._create_status)
        hook = repo + "/hooks/{hook_id}/deliveries"
        app.router.add_get(hook, self._list_deliveries)
        app.router.add_post(hook + "/{delivery_id}/attempts", self._redeliver)
        app.add_routes(AppEndpoints(self, prefix).routes() + self.checks(prefix) + git_routes(self))
        return app

    def _login(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.users.get(token) if scheme.lower() in ("bearer", "token") else None

    async def _graphql(self, request: web.Request) -> web.Response:
        self.graphql_calls += 1
        await self._held_back("graphql")
        if self.graphql_down:
            return web.json_response({"message": "Server Error"}, status=502)
        login = self._login(request)
        if login is None:
            return web.json_response(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com"},
                status=401,
            )
        body = await request.json()
        query: str = body["query"]
        variables: dict[str, Any] = body.get("variables", {})
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        if "viewer" in query:
            data["viewer"] = {"login": login}
        if "repository(" in query:
            wanted = f"{variables['owner']}/{variables['name']}".lower()
            found = next(
                (
                    (name, perm)
                    for (who, name), perm in self.permissions.items()
                    if who == login and name.lower() == wanted
                ),
                None,
            )
            if found is None:
                data["repository"] = None
                errors.append(
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository"],
                        "message": f"Could not resolve to a Repository with the name '{wanted}'.",
                    }
                )
            else:
                name, permission = found
                data["repository"] = {
                    "nameWithOwner": name,
                    "viewerPermission": permission,
                    "defaultBranchRef": {"name": self.default_branches.get(name, "main")},
                }
        if "organization(" in query:
            organization = variables["login"]
            admins = self.org_admins.get(organization)
            if admins is None:
                data["organization"] = None
                errors.append(
                    {
                        "type": "NOT_FOUND",
                        "path": ["organization"],
                        "message": "Could not resolve to an Organization.",
                    }
                )
            else:
                data["organization"] = {"viewerCanAdminister": login in admins}
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    async def _create_hook(self, request: web.Request) -> web.Response:
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        login = self._login(request)
        if login is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        permission = next(
            (
                perm
                for (who, name), perm in self.permissions.items()
                if who == login and name.lower() == repository.lower()
            ),
            None,
        )
        if permission != "ADMIN":
            return web.json_response({"message": "Not Found"}, status=404)
        await self._held_back("hooks")
        body = await request.json()
        hook = CreatedHook(
            id=len(self.hooks) + 1,
            repository=repository,
            url=body["config"]["url"],
            secret=body["config"]["secret"],
            events=list(body["events"]),
            content_type=body["config"]["content_type"],
        )
        self.hooks[hook.id] = hook
        return web.json_response({"id": hook.id, "type": "Repository", "active": True}, status=201)

    async def _delete_hook(self, request: web.Request) -> web.Response:
        if self.hooks.pop(int(request.match_info["hook_id"]), None) is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.Response(status=204)

    async def _list_deliveries(self, request: web.Request) -> web.Response:
        return web.json_response([d.listed() for d in self.deliveries])

    async def _redeliver(self, request: web.Request) -> web.Response:
        delivery_id = int(request.match_info["delivery_id"])
        return await self.redeliver_from(self.deliveries, self.redelivery_requests, delivery_id)

    async def redeliver_from(
        self, log: list[HookDelivery], asked: list[int], delivery_id: int
    ) -> web.Response:
        """Like GitHub: send the delivery again, same GUID, and log the new attempt."""
        original = next((d for d in log if d.id == delivery_id), None)
        if original is None:
            return web.json_response({"message": "Not Found"}, status=404)
        asked.append(original.id)
        assert self.redeliver is not None
        status = await self.redeliver(original)
        log.insert(0, dataclasses.replace(original, id=original.id + 1000, status_code=status))
        return web.json_response({}, status=202)

    async def _create_status(self, request: web.Request) -> web.Response:
        if (refusal := refuse_token(self.app_auth, request)) is not None:
            return refusal
        if self.scripted:
            status, headers = self.scripted.pop(0)
            return web.json_response({"message": "scripted"}, status=status, headers=headers)
        body: dict[str, Any] = await request.json()
        held = self.holds.get(request.match_info["sha"])
        if held is not None and not held.released.is_set():
            async with self._changed:
                held.arrived.append(body)
                self._changed.notify_all()
            await held.released.wait()
        post = StatusPost(
            repository=f"{request.match_info['owner']}/{request.match_info['repo']}",
            sha=request.match_info["sha"],
            state=body["state"],
            context=body["context"],
            description=body.get("description", ""),
            target_url=body.get("target_url", ""),
            authorization=request.headers.get("Authorization", ""),
        )
        async with self._changed:
            self.statuses.append(post)
            self._changed.notify_all()
        return web.json_response({"id": len(self.statuses), **body}, status=201)

    def for_commit(self, sha: str, context: str = "hobotnica/test") -> list[StatusPost]:
        return [s for s in self.statuses if s.sha == sha and s.context == context]

    def last_state(self, sha: str, context: str = "hobotnica/test") -> str | None:
        posts = self.for_commit(sha, context)
        return posts[-1].state if posts else None

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT
    ) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(condition)

    async def wait_running(
        self, sha: str, context: str = "hobotnica/test", timeout: float = WAIT_TIMEOUT
    ) -> None:
        """Until GitHub was told the build runs (a queued state may be collapsed away)."""
        await self.wait_until(
            lambda: any(s.description.startswith("Running") for s in self.for_commit(sha, context)),
            timeout,
        )

    async def wait_final(
        self, sha: str, context: str = "hobotnica/test", timeout: float = WAIT_TIMEOUT
    ) -> StatusPost:
        """The first final (non-pending) status posted for the commit and context."""
        try:
            await self.wait_until(
                lambda: any(s.state != "pending" for s in self.for_commit(sha, context)), timeout
            )
        except TimeoutError:
            posted = [(s.state, s.description) for s in self.for_commit(sha, context)]
            raise AssertionError(
                f"no final {context} status for {sha[:7]} in {timeout} s; posted: {posted}"
            ) from None
        return next(s for s in self.for_commit(sha, context) if s.state != "pending")


def main() -> None:
    """Run the fake on loopback by hand, to try the REST API without GitHub:

    python -m tests.support.fake_github --port 9001 --user TOKEN:alice \\
        --grant alice:octo-org/hello:ADMIN --org-admin octo-org:alice
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--user", action="append", default=[], help="TOKEN:LOGIN")
    parser.add_argument("--grant", action="append", default=[], help="LOGIN:OWNER/NAME:PERMISSION")
    parser.add_argument("--org-admin", action="append", default=[], help="ORG:LOGIN")
    arguments = parser.parse_args()
    fake = FakeGitHub()
    for user in arguments.user:
        token, login = user.rsplit(":", 1)
        fake.add_user(token, login)
    for grant in arguments.grant:
        login, repository, permission = grant.split(":")
        fake.grant(login, repository, permission)
    for admin in arguments.org_admin:
        organization, login = admin.split(":")
        fake.org_admins.setdefault(organization, set()).add(login)
    web.run_app(fake.app(), host="127.0.0.1", port=arguments.port)


if __name__ == "__main__":
    main()
