"""`GET /signin` (the form), `POST /signin` (checks the password, sets the session cookie, goes
back to the page that asked), `POST /signout` (clears it). See `runner.web.auth` for the rules.

A failed sign-in answers 401 with the form again and logs one line: the client, and the user
name only when it is a configured one. The password is never logged, echoed or kept.
"""

import structlog
from aiohttp import web

from runner.web.auth import Access, safe_next, same_origin
from runner.web.rendering import Renderer

log = structlog.get_logger(logger_name="hobotnica.auth")

# A sign-in form is a few hundred bytes; refuse to read megabytes of one.
MAX_FORM_BYTES = 16 * 1024
MAX_FIELD = 1024


class SignIn:
    def __init__(self, access: Access, renderer: Renderer) -> None:
        self._access = access
        self._renderer = renderer

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/signin", self.form),
            web.post("/signin", self.submit),
            web.post("/signout", self._access.require_session(self.sign_out)),
        ]

    async def form(self, request: web.Request) -> web.Response:
        target = safe_next(request.query.get("next"))
        viewer = await self._access.viewer(request)
        if viewer is not None and viewer.session is not None:
            raise web.HTTPSeeOther(target)
        return self._renderer.page(request, "signin.html", next=target, failed=False, username="")

    async def submit(self, request: web.Request) -> web.Response:
        if not same_origin(request):
            raise web.HTTPForbidden(text="cross-origin request refused\n")
        if (request.content_length or 0) > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_FORM_BYTES, request.content_length or 0)
        form = await request.post()
        username = _field(form.get("username"))
        password = _field(form.get("password"))
        target = safe_next(_field(form.get("next")))
        if username and password and await self._access.check_password(username, password):
            response = web.Response(status=303, headers={"Location": target})
            self._access.start_session(response, username, https=request.secure)
            log.info("signed in", user=username)
            return response
        known = self._access.is_user(username)
        log.warning("sign-in failed", user=username if known else None, user_known=known)
        return self._renderer.page(
            request,
            "signin.html",
            status=401,
            next=target,
            failed=True,
            username=username if known else "",
        )

    async def sign_out(self, request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={"Location": "/"})
        self._access.end_session(response)
        return response


def _field(value: object) -> str:
    return value[:MAX_FIELD] if isinstance(value, str) else ""
