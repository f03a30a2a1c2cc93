"""The checks of single settings: each takes the key's name and value and returns the value,
or raises `ConfigError` with a message that names the key (`runner.core.settings` declares
which key gets which)."""

import pwd
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

from runner.core import cron
from runner.core.errors import ConfigError
from runner.core.names import (
    is_branch_name,
    is_env_name,
    is_node_name,
    is_repository_name,
    is_user_name,
)
from runner.core.passwords import is_password_hash

# Shorter secrets would mask innocent text all over a log (think "1" or "yes").
MIN_SECRET_LENGTH = 6


class _Registered(Protocol):
    @property
    def repository(self) -> str: ...


P = TypeVar("P", bound=_Registered)


@dataclass(frozen=True)
class BuildUser:
    """The account builds run as (`builds.user`), looked up once at start."""

    name: str
    uid: int
    gid: int
    home: str


def without_credentials(name: str, value: str) -> str:
    # Checked first, so that no later message repeats a credential found in a URL.
    if "@" in urlsplit(value).netloc:
        raise ConfigError(f"{name} must not carry credentials; use github.token")
    return value


def github_owner(name: str, owner: str) -> str:
    if not is_repository_name(f"{owner}/x"):
        raise ConfigError(f"{name}: {owner!r} is not a GitHub user or organisation")
    if owner.lower() == "local":
        raise ConfigError(f"{name}: 'local' is reserved for hobotnica try")
    return owner


def build_user(name: str, user: str) -> BuildUser:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"{name}: there is no user {user!r} on this host") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"{name} must not be root: builds would own the host")
    return BuildUser(user, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def port_pair(name: str, ports: tuple[int, ...]) -> tuple[int, int]:
    if len(ports) != 2 or ports[0] == ports[1] or not all(0 < port < 65536 for port in ports):
        raise ConfigError(f"{name} must be two different port numbers, like [8081, 8082]")
    return ports[0], ports[1]


def repository(name: str, repository: str) -> str:
    if not is_repository_name(repository):
        raise ConfigError(f"{name} {repository!r} is not a valid repository name (owner/name)")
    return repository


def valid_node_name(name: str, node: str) -> str:
    if not is_node_name(node):
        raise ConfigError(
            f"{name}: {node!r} is not a node name (letters, digits, . _ : -; at most 64)"
        )
    return node


def branch(name: str, branch: str) -> str:
    if not is_branch_name(branch):
        raise ConfigError(f"{name} {branch!r} is not a valid branch name")
    return branch


NOTIFY_KEYS = (
    "slack_url",
    "webhook_url",
    "webhook_secret",
    "email_to",
    "email_from",
    "smtp_url",
)
# What an address may be: a mailbox at a domain, no display name, no spaces or angle brackets.
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[A-Za-z0-9.-]+")


def http_url(name: str, url: str) -> str:
    """A receiver's URL (Slack's incoming webhook, a JSON webhook): never repeated in a message,
    it may carry the receiver's token."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return url


def smtp_server_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port == -1:
        raise ConfigError(
            f"{name} must be smtp://USER:PASSWORD@HOST:PORT (or smtps:// for TLS from the start)"
        )
    return url


def email_address(name: str, address: str) -> str:
    if not _EMAIL.fullmatch(address):
        raise ConfigError(f"{name}: {address!r} is not an e-mail address")
    return address


def cron_expression(name: str, expression: str) -> str:
    if not cron.is_valid_expression(expression):
        raise ConfigError(
            f"{name} {expression!r} is not a cron expression (five fields: minute hour"
            ' day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day)'
        )
    return expression


def time_zone(name: str, zone: str) -> str:
    if not cron.is_time_zone(zone):
        raise ConfigError(f"{name} {zone!r} is not a time zone (e.g. UTC, Europe/Ljubljana)")
    return zone


def registered_once(name: str, projects: tuple[P, ...]) -> tuple[P, ...]:
    seen: set[str] = set()
    for project in projects:
        if project.repository.lower() in seen:
            raise ConfigError(f"{name}: {project.repository} is registered twice")
        seen.add(project.repository.lower())
    return projects


# Entries of a table of variables, or of [ui] users: `check(name, key, value)`. Values of secrets
# and password hashes are never echoed: a password pasted where its hash belongs stays unprinted.


def variable_name(name: str, key: str, value: str) -> str:
    if not is_env_name(key):
        raise ConfigError(f"{name}.{key} is not a valid environment variable name")
    if key.startswith("HOBOTNICA") or key == "CI":
        raise ConfigError(f"{name}.{key}: that name is reserved for Hobotnica")
    return value


def maskable(name: str, key: str, value: str) -> str:
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{name}.{key} is shorter than {MIN_SECRET_LENGTH} characters: "
            "too short to mask in logs safely"
        )
    return value


def user_name(name: str, key: str, value: str) -> str:
    if not is_user_name(key):
        raise ConfigError(
            f"{name}: {key!r} is not a valid user name (letters, digits, . _ @ -; at most 64)"
        )
    return value


def password_hash(name: str, key: str, value: str) -> str:
    if not is_password_hash(value):
        raise ConfigError(
            f"{name}.{key} is not a password hash: make one with `hobotnica hash-password`"
        )
    return value


def local_url(server: Mapping[str, Any]) -> str:
    return f"http://{server['host']}:{server['port']}"


def postgresql_url(name: str, value: str | None) -> str | None:
    """A PostgreSQL URL without a password (libpq reads it from ~/.pgpass or PGPASSWORD)."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{name} must be a postgresql:// URL (empty: the embedded SQLite)")
    in_query = any(key.lower() == "password" for key, _ in parse_qsl(parts.query))
    if parts.password is not None or in_query:
        raise ConfigError(
            f"{name} must not carry a password: put it in ~/.pgpass (or PGPASSFILE), or in the "
            "environment variable PGPASSWORD"
        )
    return value


def app_private_key_file(name: str, path: Path) -> Path:
    """The App's private key: a file only its owner may read, holding an RSA key in PEM."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {path}: {error.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{name}: {path} may be read by others (mode {stat.S_IMODE(mode):04o}); it holds "
            f"the App's private key: chmod 600 {path}"
        )
    app_private_key(name, pem.decode("utf-8", "replace"))
    return path


def app_private_key(name: str, pem: str) -> str:
    """An RSA private key in PEM, as GitHub gives it on the App's settings page."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(
            f"{name} is not an unencrypted RSA private key in PEM format (generate one on the "
            "GitHub App's settings page, under Private keys)"
        )
    return pem
