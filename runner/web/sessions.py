"""Signed session cookies and the CSRF tokens bound to them. Pure but for `load_session_key`.

A session is a cookie, not a row: `v1.USER.EXPIRES.NONCE.MAC`, where MAC is an HMAC-SHA256 with a
key kept in `{data_dir}/session.key` (created once, mode 0600), so both blue/green instances
accept the same cookies and a restart signs no one out. The MAC also covers a fingerprint of the
user's password hash: changing a password in the config ends that user's sessions. Sessions
last `SESSION_LIFETIME`; signing out clears the cookie (there is no server-side list to revoke
from, so a stolen cookie is good until it expires — it is HttpOnly and never logged).

The CSRF token of a session is an HMAC of its nonce: forms carry it, and a POST without the
token of the caller's own session changes nothing.
"""

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.core.errors import ConfigError
from runner.core.names import is_user_name

COOKIE_NAME = "hobotnica_session"
SESSION_LIFETIME = 12 * 3600
KEY_BYTES = 32
VERSION = "v1"


@dataclass(frozen=True)
class Session:
    user: str
    expires: int
    nonce: str


def load_session_key(data_dir: Path) -> bytes:
    """The installation's session key: read it, or create it (0600) if no daemon has yet.

    Two daemons starting at once on one data directory agree: the key is written to a private
    temporary file and linked into place, which fails if another daemon linked its key first.
    """
    path = data_dir / "session.key"
    if not path.exists():
        temporary = data_dir / f".session.key.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(KEY_BYTES))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} is not a session key ({KEY_BYTES} bytes); delete it to make one")
    return key


class SessionSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, user: str, password_hash: str, now: float) -> tuple[str, Session]:
        session = Session(user, int(now) + SESSION_LIFETIME, secrets.token_urlsafe(16))
        payload = _payload(session)
        return f"{payload}.{self._mac(payload, password_hash)}", session

    def verify(
        self, cookie: str, password_hash_of: Callable[[str], str | None], now: float
    ) -> Session | None:
        """The session a cookie carries, if it is genuine, current and its user still exists."""
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != VERSION:
            return None
        try:
            user = _decode(parts[1])
            expires = int(parts[2], 10)
        except ValueError:
            return None
        if not is_user_name(user) or expires <= now or expires > now + SESSION_LIFETIME + 60:
            return None
        password_hash = password_hash_of(user)
        if password_hash is None:
            return None
        payload = ".".join(parts[:4])
        if not hmac.compare_digest(parts[4], self._mac(payload, password_hash)):
            return None
        return Session(user, expires, parts[3])

    def memo(self, user: str, password: str) -> bytes:
        """A keyed digest of a credential, to remember it was right without keeping it."""
        message = f"basic|{user}\0{password}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def csrf_token(self, session: Session) -> str:
        digest = hmac.new(self._key, f"csrf|{session.nonce}".encode(), hashlib.sha256).digest()
        return _encode(digest)

    def is_valid_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())

    def _mac(self, payload: str, password_hash: str) -> str:
        fingerprint = hashlib.sha256(password_hash.encode()).hexdigest()
        message = f"session|{payload}|{fingerprint}".encode()
        return _encode(hmac.new(self._key, message, hashlib.sha256).digest())


def _payload(session: Session) -> str:
    return ".".join((VERSION, _encode(session.user.encode()), str(session.expires), session.nonce))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> str:
    if not text.isascii():
        raise ValueError("non-ASCII")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("bad base64") from None
