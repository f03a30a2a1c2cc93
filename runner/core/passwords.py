"""Password hashes for `[ui] users`: scrypt (RFC 7914, from `hashlib`) in a self-describing string.

    scrypt$N$r$p$SALT$KEY        (SALT and KEY in unpadded URL-safe base64)

The cost parameters travel with each hash, so raising the default later leaves older hashes
valid. The default is the OWASP Password Storage Cheat Sheet's minimum for scrypt (N=2^17, r=8,
p=1: 128 MiB and about a third of a second per check), which is why checking a password is done
off the event loop and not on every request (see `runner.web.auth`). Parameters beyond sane bounds
are refused, so a hash in the config cannot make the daemon allocate gigabytes.

`hobotnica hash-password` prints a hash; nothing here ever logs or returns a password.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**17
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# Bounds on what a hash may ask for: at most 1 GiB of memory for one check.
MAX_N = 2**20
MAX_R = 16
MAX_P = 16


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> "PasswordHash":
        """Raises ValueError (without echoing `text`) when it is not a hash this module made."""
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError("not a scrypt$N$r$p$SALT$KEY password hash")
        try:
            n, r, p = (int(part, 10) for part in parts[1:4])
            salt, key = _decode(parts[4]), _decode(parts[5])
        except ValueError:
            raise ValueError("malformed scrypt password hash") from None
        power_of_two = n > 1 and n & (n - 1) == 0
        if not (power_of_two and n <= MAX_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise ValueError("scrypt parameters out of range")
        if len(salt) < 8 or len(key) < 16:
            raise ValueError("scrypt salt or key too short")
        return cls(n, r, p, salt, key)

    def matches(self, password: str) -> bool:
        derived = _derive(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        return "$".join(
            (SCHEME, str(self.n), str(self.r), str(self.p), _encode(self.salt), _encode(self.key))
        )


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    return str(PasswordHash(n, r, p, salt, _derive(password, salt, n, r, p, KEY_BYTES)))


def is_password_hash(text: str) -> bool:
    try:
        PasswordHash.parse(text)
    except ValueError:
        return False
    return True


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # scrypt needs 128 * n * r bytes (plus p blocks); OpenSSL refuses more than `maxmem`.
    memory = 128 * r * (n + p + 2)
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory + 1024 * 1024, dklen=length
    )


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or non-ASCII base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("bad base64") from None
