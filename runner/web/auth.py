"""Who may look at the pages: `[ui] users` with a session cookie or HTTP Basic, or `[ui] public`.

Not a global middleware: each route opts in with `Access.protect` (reading) or
`Access.require_session` (changing something), so routes that answer to other credentials
(webhooks are signed, the REST API takes GitHub tokens) are never swallowed by it.

- Reading: a session cookie (`runner.web.sessions`) or an `Authorization: Basic` header, which
  is what curl and Prometheus send. Without either, a browser asking for HTML is sent to the
  sign-in page (303, `?next=` the page it wanted), anything else gets 401 with
  `WWW-Authenticate: Basic`. With `[ui] public = true` everyone may read.
- Changing (cancel, re-run, sign-out): a session and the CSRF token of that session in the form,
  and no foreign `Origin`. HTTP Basic alone cannot change anything: a browser sends remembered
  Basic credentials with any cross-site form, which is exactly what CSRF tokens are for.
- Passwords are checked with scrypt off the event loop, one check at a time (128 MiB each), so
  a flood of wrong passwords costs time, not memory. A Basic credential's answer is remembered
  (as an HMAC, never as text), so a scraper or a page's requests do not pay scrypt each time.
  Unknown users cost a check too, so timing does not tell which names exist. Public pages look
  at session cookies only: an Authorization header sent to them costs no check. Failed
  sign-ins are logged with the user name only if it is a configured one (people type
  passwords into the name field) and never with the password.
"""

import asyncio
import base64
import binascii
import contextvars
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web

from runner.core.passwords import PasswordHash
from runner.core.settings import UiSettings
from runner.web.sessions import COOKIE_NAME, SESSION_LIFETIME, Session, SessionSigner

log = structlog.get_logger(logger_name="hobotnica.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BASIC_CACHE_SECONDS = 600
FAILURE_CACHE_SECONDS = 60
BASIC_CACHE_SIZE = 256
SIGN_IN_PATH = "/signin"
# Who the current request is for; set around the handler by `protect`/`require_session`.
_viewer: contextvars.ContextVar["Viewer"] = contextvars.ContextVar("viewer")
# Checked when a name is unknown, so that it costs as much as a known one.
_DECOY_HASH = "scrypt$131072$8$1$c2lnbi1pbi1kZWNveQ$" + "A" * 43


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a user (by session or Basic), or nobody on public pages."""

    user: str | None = None
    session: Session | None = None
    csrf_token: str | None = None

    @property
    def can_change(self) -> bool:
        """Cancel and re-run need a session: its CSRF token protects the forms."""
        return self.session is not None


ANONYMOUS = Viewer()


def viewer_of(request: web.Request) -> Viewer:
    """The viewer `protect` or `require_session` let through to this request's handler."""
    return _viewer.get(ANONYMOUS)


class Access:
    def __init__(self, ui: UiSettings, *, secure_cookies: bool) -> None:
        self.public = ui.public
        self._users = dict(ui.users)
        self._secure = secure_cookies
        self._signer: SessionSigner | None = None
        self._checks = asyncio.Semaphore(1)
        self._remembered: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def use_session_key(self, key: bytes) -> None:
        self._signer = SessionSigner(key)

    @property
    def signer(self) -> SessionSigner:
        assert self._signer is not None, "use_session_key() runs at start-up"
        return self._signer

    # -- deciding ----------------------------------------------------------------------------

    async def viewer(self, request: web.Request, *, basic: bool = True) -> Viewer | None:
        """The signed-in viewer, or None when the request carries no valid credentials.

        `basic=False`: the session cookie only (what changes need; and all public pages need,
        so that a stray Authorization header cannot make them check a password).
        """
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            session = self.signer.verify(cookie, self._users.get, time.time())
            if session is not None:
                token = self.signer.csrf_token(session)
                return Viewer(session.user, session, token)
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if basic and credentials is not None and await self.check_password(*credentials):
            return Viewer(credentials[0])
        return None

    async def check_password(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s; the answer is remembered (`BASIC_CACHE_SECONDS`
        when right, `FAILURE_CACHE_SECONDS` when wrong, so a scraper with a stale password
        does not cost a check per scrape)."""
        memo = self.signer.memo(user, password)
        now = time.monotonic()
        remembered = self._remembered.get(memo)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        stored = self._users.get(user)
        async with self._checks:
            matches = await asyncio.to_thread(_matches, password, stored or _DECOY_HASH)
        right = bool(matches and stored)
        expires = now + (BASIC_CACHE_SECONDS if right else FAILURE_CACHE_SECONDS)
        self._remembered[memo] = (expires, right)
        self._remembered.move_to_end(memo)
        while len(self._remembered) > BASIC_CACHE_SIZE:
            self._remembered.popitem(last=False)
        return right

    def protect(self, handler: Handler) -> Handler:
        """Let signed-in viewers (everyone, when public) through to `handler`."""

        async def protected(request: web.Request) -> web.StreamResponse:
            viewer = await self.viewer(request, basic=not self.public)
            if viewer is None and not self.public:
                return self.challenge(request)
            token = _viewer.set(viewer or ANONYMOUS)
            try:
                return await handler(request)
            finally:
                _viewer.reset(token)

        return protected

    def require_session(self, handler: Handler) -> Handler:
        """For forms that change something: a session, its CSRF token, no foreign Origin."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not same_origin(request):
                raise web.HTTPForbidden(text="cross-origin request refused\n")
            viewer = await self.viewer(request, basic=False)
            if viewer is None or viewer.session is None:
                return self.challenge(request)
            form = await request.post()
            csrf = form.get("csrf")
            if not isinstance(csrf, str) or not self.signer.is_valid_csrf(viewer.session, csrf):
                raise web.HTTPForbidden(text="stale form: reload the page and try again\n")
            token = _viewer.set(viewer)
            try:
                return await handler(request)
            finally:
                _viewer.reset(token)

        return guarded

    def challenge(self, request: web.Request) -> web.Response:
        if wants_html(request) and request.method in ("GET", "HEAD"):
            target = quote(request.rel_url.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?next={target}")
        return web.Response(
            status=401,
            text="sign-in required: HTTP Basic with a [ui] user, or sign in at /signin\n",
            headers={"WWW-Authenticate": 'Basic realm="Hobotnica", charset="UTF-8"'},
        )

    # -- the session cookie ------------------------------------------------------------------

    def start_session(self, response: web.StreamResponse, user: str, *, https: bool) -> None:
        """`https`: the browser's request came over HTTPS (through a trusted proxy, maybe)."""
        cookie, _ = self.signer.issue(user, self._users[user], time.time())
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=SESSION_LIFETIME,
            path="/",
            httponly=True,
            secure=self._secure or https,
            samesite="Lax",  # Strict would drop it on the way in from GitHub's "Details" link
        )

    def end_session(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE_NAME, path="/")

    def is_user(self, name: str) -> bool:
        return name in self._users


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 for c in target) or urlsplit(target).netloc:
        return "/"
    return target


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # old browsers and non-browser clients send none; the token still counts
        return True
    return urlsplit(origin).netloc == request.host


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def _matches(password: str, encoded: str) -> bool:
    try:
        return PasswordHash.parse(encoded).matches(password)
    except ValueError:
        return False
