"""A GitHub App as the fake GitHub knows it: its key, installations and installation tokens.

`FakeGitHub.enable_app()` plugs a `FakeApp` in; its endpoints are in fake_github_app_routes.py.
The App holds an RSA key (the daemon signs its JWTs with `private_key_pem`), the installations
and their repositories, and every token it issued. `jwt_refusal` checks a JWT as GitHub does
(https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app):
RS256, `iss` the app id (int or string), `exp` in the future, `iat` at most 60 s ahead and
`exp - iat` at most 10 minutes.

Installation tokens look like GitHub's (`ghs_` and 36 alphanumerics) and are good for their
installation's repositories (or those asked for) until `expires_at`, on the App's clock `now`:
a test moves it instead of sleeping. `refusal` says what GitHub answers to a token that is
unknown, expired, revoked or uninstalled (401), suspended (403), or good but not for the
repository (404).
"""

from __future__ import annotations

import math
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from tests.support.fake_github import HookDelivery

SLUG = "hobotnica-test"
PERMISSIONS = {"contents": "read", "metadata": "read", "statuses": "write"}
EVENTS = ["push", "pull_request"]
INSTALLATION_TOKEN = re.compile(r"ghs_[A-Za-z0-9]{36}")


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Installation:
    id: int
    account: str
    account_type: str
    repositories: list[str]  # owner/name
    created_at: str
    updated_at: str
    suspended_at: str | None = None

    def covers(self, repository: str) -> bool:
        return repository.lower() in (name.lower() for name in self.repositories)


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires: float  # on the App's clock, whole seconds like the `expires_at` GitHub answers
    repositories: frozenset[str] | None  # lower-case owner/name asked for; None: all


@dataclass
class FakeApp:
    app_id: int = 4242
    token_lifetime: float = 3600.0
    now: Callable[[], float] = time.time
    installations: dict[int, Installation] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    # (the JWT as sent, why it was refused) and (path, why an installation token was refused).
    rejected_jwts: list[tuple[str, str]] = field(default_factory=list)
    refused_tokens: list[tuple[str, str]] = field(default_factory=list)
    # The App webhook's delivery log (newest first) and the redeliveries asked of it.
    deliveries: list[HookDelivery] = field(default_factory=list)
    redelivery_requests: list[int] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # account and repository ids by name
    private_key: rsa.RSAPrivateKey = field(default_factory=_new_key, repr=False)

    @property
    def private_key_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def install(
        self,
        installation_id: int,
        account: str,
        repositories: list[str],
        *,
        account_type: str = "Organization",
    ) -> None:
        stamp = iso(self.now())
        self.installations[installation_id] = Installation(
            installation_id, account, account_type, list(repositories), stamp, stamp
        )

    def add_repositories(self, installation_id: int, names: list[str]) -> None:
        installation = self.installations[installation_id]
        installation.repositories += [n for n in names if not installation.covers(n)]
        installation.updated_at = iso(self.now())

    def remove_repositories(self, installation_id: int, names: list[str]) -> None:
        installation = self.installations[installation_id]
        gone = {name.lower() for name in names}
        installation.repositories = [n for n in installation.repositories if n.lower() not in gone]
        installation.updated_at = iso(self.now())

    def suspend(self, installation_id: int) -> None:
        installation = self.installations[installation_id]
        installation.suspended_at = installation.updated_at = iso(self.now())

    def uninstall(self, installation_id: int) -> None:
        """Like GitHub, uninstalling revokes the installation's tokens."""
        del self.installations[installation_id]
        self.revoked |= {t for t, i in self.tokens.items() if i.installation_id == installation_id}

    def revoke_tokens(self) -> None:
        self.revoked |= set(self.issued)

    def issue(self, installation_id: int, repositories: list[str] | None = None) -> IssuedToken:
        alphabet = string.ascii_letters + string.digits
        token = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        names = None if repositories is None else frozenset(r.lower() for r in repositories)
        expires = float(math.ceil(self.now() + self.token_lifetime))
        issued = self.tokens[token] = IssuedToken(token, installation_id, expires, names)
        self.issued.append(token)
        return issued

    def refusal(self, token: str, repository: str | None = None) -> tuple[int, str] | None:
        """Why GitHub would refuse `token` (for `repository`): (status, reason), or None."""
        issued = self.tokens.get(token)
        if issued is None:
            return 401, "unknown"
        if token in self.revoked:
            return 401, "revoked"
        if self.now() >= issued.expires:
            return 401, "expired"
        installation = self.installations.get(issued.installation_id)
        if installation is None:
            return 401, "uninstalled"
        if installation.suspended_at is not None:
            return 403, "suspended"
        if repository is not None and not (
            installation.covers(repository)
            and (issued.repositories is None or repository.lower() in issued.repositories)
        ):
            return 404, f"does not cover {repository}"
        return None

    def jwt_refusal(self, token: str) -> str | None:
        """Why GitHub would refuse `token` as this App's JWT, or None."""
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                # The times are checked below, on the App's clock.
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": ["iat", "exp", "iss"]},
            )  # fmt: skip
        except jwt.PyJWTError as error:
            return f"undecodable: {error}"
        iat, exp, now = claims["iat"], claims["exp"], self.now()
        if not all(isinstance(t, int | float) for t in (iat, exp)):
            return "iat or exp is not a number"
        if str(claims["iss"]) != str(self.app_id):
            return f"iss {claims['iss']!r} is not the app id"
        if exp <= now:
            return "expired"
        if iat > now + 60:
            return "issued in the future"
        if exp - iat > 600:
            return "lives longer than 10 minutes"
        return None

    def id_of(self, name: str) -> int:
        return self.ids.setdefault(name.lower(), 1000 + len(self.ids))

    def installation_json(self, installation: Installation, api: str, site: str) -> dict[str, Any]:
        account = installation.account
        suspended = installation.suspended_at is not None
        return {
            "id": installation.id,
            "account": {
                "login": account,
                "id": self.id_of(account),
                "node_id": f"O_{self.id_of(account)}",
                "type": installation.account_type,
                "html_url": f"{site}/{account}",
            },
            "repository_selection": "selected",
            "access_tokens_url": f"{api}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"{site}/organizations/{account}/settings/installations/{installation.id}",
            "app_id": self.app_id,
            "app_slug": SLUG,
            "target_id": self.id_of(account),
            "target_type": installation.account_type,
            "permissions": PERMISSIONS,
            "events": EVENTS,
            "created_at": installation.created_at,
            "updated_at": installation.updated_at,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": {"login": account} if suspended else None,
            "suspended_at": installation.suspended_at,
        }

    def app_json(self, site: str) -> dict[str, Any]:
        return {
            "id": self.app_id,
            "slug": SLUG,
            "node_id": f"A_{self.app_id}",
            "name": "Hobotnica test",
            "description": "The App of Hobotnica's tests",
            "owner": {"login": "octo-org", "id": self.id_of("octo-org"), "type": "Organization"},
            "external_url": "https://hobotnica.test",
            "html_url": f"{site}/apps/{SLUG}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": PERMISSIONS,
            "events": EVENTS,
            "installations_count": len(self.installations),
        }

    def repository_json(self, name: str, api: str, site: str) -> dict[str, Any]:
        owner, _, short = name.partition("/")
        return {
            "id": self.id_of(name),
            "node_id": f"R_{self.id_of(name)}",
            "name": short,
            "full_name": name,
            "private": True,
            "default_branch": "main",
            "owner": {"login": owner, "id": self.id_of(owner)},
            "url": f"{api}/repos/{name}",
            "clone_url": f"{site}/{name}.git",
            "html_url": f"{site}/{name}",
        }
