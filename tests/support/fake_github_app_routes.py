"""The fake GitHub's REST endpoints for a GitHub App, and how it tells credentials apart.

`AppEndpoints(fake, prefix).routes()` answers as GitHub does
(https://docs.github.com/en/rest/apps): `GET /app`, `GET /app/installations`,
`POST /app/installations/{id}/access_tokens`, `GET /repos/{owner}/{repo}/installation`,
`GET /app/hook/deliveries` and `POST .../{delivery_id}/attempts` with the App's JWT (otherwise
401, and the JWT lands in `FakeApp.rejected_jwts`), `GET /installation/repositories` with an
installation token. Lists are paginated with `per_page`/`page` and a `Link` header. All answer
404 while the fake has no App.

`refuse_token` is for the fake's other endpoints (status posts): a token shaped like an
installation token (`ghs_` and 36 alphanumerics) that the App did not issue, or that expired,
was revoked or does not cover the repository, is refused as GitHub would and lands in
`FakeApp.refused_tokens`. Any other credential is not the App's business and passes, so tests
in token mode, and all tests while no App is enabled, see the fake as before.

`record_requests` notes (method, path without the prefix, "jwt" | "installation" | "token" |
"none") of every request in `FakeGitHub.requests`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tests.support.fake_github_app import INSTALLATION_TOKEN, PERMISSIONS, FakeApp, iso

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

DOCS = "https://docs.github.com/rest"
# GitHub's answers to a refused token, by status.
REFUSED = {
    401: "Bad credentials",
    403: "This installation has been suspended",
    404: "Not Found",
}
API_PATH = web.RequestKey("api_path", str)  # the path without the prefix
AppHandler = Callable[[FakeApp, web.Request], Awaitable[web.Response]]


def answer(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": DOCS}, status=status)


def bearer(request: web.Request) -> str | None:
    """The token of `Authorization: token X` or `Bearer X` (any case), else None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") and token.strip() else None


def basic(request: web.Request) -> tuple[str, str] | None:
    """(user, password) of `Authorization: Basic ...`, else None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def auth_kind(app: FakeApp | None, request: web.Request) -> str:
    """The credential sent: "jwt", "installation" (a token the App issued), "token" or "none"."""
    token = bearer(request)
    if token is None:
        credentials = basic(request)
        token = credentials[1] if credentials else None
    if token is None:
        return "token" if "Authorization" in request.headers else "none"
    if token.startswith("eyJ") and token.count(".") == 2:
        return "jwt"
    return "installation" if app is not None and token in app.tokens else "token"


def record_requests(fake: FakeGitHub, prefix: str) -> Middleware:
    """Append (method, path without `prefix`, auth kind) to `fake.requests` for each request."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if prefix and path.startswith(prefix + "/"):
            path = path.removeprefix(prefix)
        elif path == prefix.removesuffix("/v3") + "/graphql":
            path = "/graphql"
        request[API_PATH] = path
        fake.requests.append((request.method, path, auth_kind(fake.app_auth, request)))
        return await handler(request)

    return record


def refused(app: FakeApp, request: web.Request, status: int, reason: str) -> web.Response:
    app.refused_tokens.append((request.get(API_PATH, request.path), reason))
    return answer(status, REFUSED[status])


def refuse_token(app: FakeApp | None, request: web.Request) -> web.Response | None:
    """For `/repos/{owner}/{repo}/...`: GitHub's answer to a bad installation token, or None
    when the request is not the App's business (no App, or no installation-shaped token)."""
    token = bearer(request)
    if app is None or token is None or not INSTALLATION_TOKEN.fullmatch(token):
        return None
    repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
    refusal = app.refusal(token, repository)
    return None if refusal is None else refused(app, request, *refusal)


def _number(request: web.Request, name: str, default: int, most: int) -> int:
    try:
        return max(1, min(int(request.query.get(name, default)), most))
    except ValueError:
        return default


def paginated(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """One page of `items` for `per_page`/`page`, and GitHub's `Link` header for the others."""
    per_page = _number(request, "per_page", 30, 100)
    page = _number(request, "page", 1, 1_000_000)
    last = max(1, math.ceil(len(items) / per_page))
    pages = []
    if page > 1:
        pages += [(page - 1, "prev"), (1, "first")]
    if page < last:
        pages += [(page + 1, "next"), (last, "last")]
    link = ", ".join(
        f'<{request.url.update_query(per_page=per_page, page=n)}>; rel="{rel}"' for n, rel in pages
    )
    return items[(page - 1) * per_page : page * per_page], {"Link": link} if link else {}


class AppEndpoints:
    """The REST endpoints of a GitHub App, under `prefix`; 404 while the fake has no App."""

    def __init__(self, fake: FakeGitHub, prefix: str) -> None:
        self.fake = fake
        self.prefix = prefix

    def routes(self) -> list[web.RouteDef]:
        p, jwt_only = self.prefix, self._jwt_only
        return [
            web.get(p + "/app", jwt_only(self._app)),
            web.get(p + "/app/installations", jwt_only(self._installations)),
            web.get(p + r"/app/installations/{installation_id:\d+}", jwt_only(self._installation)),
            web.post(
                p + r"/app/installations/{installation_id:\d+}/access_tokens",
                jwt_only(self._access_token),
            ),
            web.get(p + "/repos/{owner}/{repo}/installation", jwt_only(self._repo_installation)),
            web.get(p + "/installation/repositories", self._repositories),
            web.get(p + "/app/hook/deliveries", jwt_only(self._deliveries)),
            web.post(
                p + r"/app/hook/deliveries/{delivery_id:\d+}/attempts", jwt_only(self._redeliver)
            ),
        ]

    def _bases(self, request: web.Request) -> tuple[str, str]:
        site = str(request.url.origin())
        return site + self.prefix, site

    def _jwt_only(self, handler: AppHandler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            app = self.fake.app_auth
            if app is None:
                return answer(404, "Not Found")
            token = bearer(request) or ""
            reason = app.jwt_refusal(token) if token else "no bearer token"
            if reason is not None:
                app.rejected_jwts.append((token, reason))
                return answer(401, "A JSON web token could not be decoded")
            return await handler(app, request)

        return checked

    async def _app(self, app: FakeApp, request: web.Request) -> web.Response:
        return web.json_response(app.app_json(self._bases(request)[1]))

    async def _installations(self, app: FakeApp, request: web.Request) -> web.Response:
        listed = [
            app.installation_json(i, *self._bases(request)) for i in app.installations.values()
        ]
        page, headers = paginated(request, listed)
        return web.json_response(page, headers=headers)

    async def _installation(self, app: FakeApp, request: web.Request) -> web.Response:
        found = app.installations.get(int(request.match_info["installation_id"]))
        if found is None:
            return answer(404, "Not Found")
        return web.json_response(app.installation_json(found, *self._bases(request)))

    async def _repo_installation(self, app: FakeApp, request: web.Request) -> web.Response:
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        found = next((i for i in app.installations.values() if i.covers(repository)), None)
        if found is None:
            return answer(404, "Not Found")
        return web.json_response(app.installation_json(found, *self._bases(request)))

    async def _access_token(self, app: FakeApp, request: web.Request) -> web.Response:
        installation = app.installations.get(int(request.match_info["installation_id"]))
        if installation is None:
            return answer(404, "Not Found")
        if installation.suspended_at is not None:
            return answer(403, REFUSED[403])
        raw = await request.read()
        body: dict[str, Any] = await request.json() if raw.strip() else {}
        owner = installation.account
        names = body.get("repositories")
        wanted = None if names is None else [f"{owner}/{n}" for n in names]
        if wanted is not None and not all(installation.covers(n) for n in wanted):
            message = "There is at least one repository that does not exist or is not accessible"
            return answer(422, message)
        issued = app.issue(installation.id, wanted)
        created: dict[str, Any] = {
            "token": issued.token,
            "expires_at": iso(issued.expires),
            "permissions": PERMISSIONS,
            "repository_selection": "selected",
        }
        if wanted is not None:
            created["repositories"] = [
                app.repository_json(n, *self._bases(request)) for n in wanted
            ]
        return web.json_response(created, status=201)

    async def _repositories(self, request: web.Request) -> web.Response:
        app = self.fake.app_auth
        if app is None:
            return answer(404, "Not Found")
        token = bearer(request) or ""
        refusal = app.refusal(token)
        if refusal is not None:
            return refused(app, request, *refusal)
        issued = app.tokens[token]
        names = [
            name
            for name in app.installations[issued.installation_id].repositories
            if issued.repositories is None or name.lower() in issued.repositories
        ]
        api, site = self._bases(request)
        page, headers = paginated(request, [app.repository_json(n, api, site) for n in names])
        return web.json_response(
            {"total_count": len(names), "repository_selection": "selected", "repositories": page},
            headers=headers,
        )

    async def _deliveries(self, app: FakeApp, request: web.Request) -> web.Response:
        return web.json_response([d.listed() for d in app.deliveries])

    async def _redeliver(self, app: FakeApp, request: web.Request) -> web.Response:
        return await self.fake.redeliver_from(
            app.deliveries, app.redelivery_requests, int(request.match_info["delivery_id"])
        )
