"""The fake GitHub as a GitHub App: what it accepts and refuses, so App-mode tests can trust it.

JWTs made by gidgethub are taken and any other is refused; installation tokens are good for their
installation's repositories until they expire on the App's clock (moved here, never slept on);
git clones over smart HTTP through a real `git http-backend` only with a good token; and the
Enterprise shape serves the same under `/api/v3`.
"""

import asyncio
import base64
import calendar
import gzip
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub.aiohttp import GitHubAPI
from gidgethub.apps import get_installation_access_token, get_jwt

from tests.support.fake_github import FakeGitHub, HookDelivery
from tests.support.fake_github_app import FakeApp
from tests.support.gitrepo import GIT_ENV, Remote

SHA = "a" * 40
STATUS = {"state": "success", "context": "hobotnica/test"}


@pytest.fixture
def app(fake_github: FakeGitHub) -> FakeApp:
    app = fake_github.enable_app()
    app.install(7, "octo", ["octo/app", "octo/lib"])
    app.install(8, "other", ["other/thing"])
    return app


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def app_jwt(app: FakeApp) -> str:
    return get_jwt(app_id=str(app.app_id), private_key=app.private_key_pem)


async def post_status(
    session: aiohttp.ClientSession, fake: FakeGitHub, repository: str, token: str
) -> tuple[int, Any]:
    url = f"{fake.url}/repos/{repository}/statuses/{SHA}"
    async with session.post(url, json=STATUS, headers={"Authorization": f"token {token}"}) as r:
        return r.status, await r.json()


async def test_a_gidgethub_jwt_gets_a_token_for_the_installations_repositories(
    fake_github: FakeGitHub, app: FakeApp, session: aiohttp.ClientSession
) -> None:
    gh = GitHubAPI(session, "hobotnica-tests", base_url=fake_github.url)
    found = await gh.getitem("/repos/octo/app/installation", jwt=app_jwt(app))
    assert (found["id"], found["account"]["login"], found["suspended_at"]) == (7, "octo", None)
    assert found["access_tokens_url"] == f"{fake_github.url}/app/installations/7/access_tokens"

    answer = await get_installation_access_token(
        gh, installation_id="7", app_id=str(app.app_id), private_key=app.private_key_pem
    )
    token = answer["token"]
    assert re.fullmatch(r"ghs_[A-Za-z0-9]{36}", token) and app.issued == [token]
    expires = calendar.timegm(time.strptime(answer["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert 3598 <= expires - time.time() <= 3601

    listed = await gh.getitem("/installation/repositories", oauth_token=token)
    assert [r["full_name"] for r in listed["repositories"]] == ["octo/app", "octo/lib"]
    assert listed["repositories"][0]["clone_url"] == f"{fake_github.url}/octo/app.git"
    assert (await post_status(session, fake_github, "octo/app", token))[0] == 201
    assert (await post_status(session, fake_github, "other/thing", token))[0] == 404

    # A JWT whose iss is a number is GitHub's other accepted spelling (PyJWT only signs
    # strings there, so it is signed as raw JWS).
    now = int(time.time())
    claims = json.dumps({"iat": now - 60, "exp": now + 500, "iss": app.app_id}).encode()
    numeric = jwt.api_jws.encode(claims, app.private_key_pem, algorithm="RS256")
    assert (await gh.getitem("/app", jwt=numeric))["slug"] == "hobotnica-test"
    assert app.rejected_jwts == []
    assert fake_github.requests == [
        ("GET", "/repos/octo/app/installation", "jwt"),
        ("POST", "/app/installations/7/access_tokens", "jwt"),
        ("GET", "/installation/repositories", "installation"),
        ("POST", f"/repos/octo/app/statuses/{SHA}", "installation"),
        ("POST", f"/repos/other/thing/statuses/{SHA}", "installation"),
        ("GET", "/app", "jwt"),
    ]


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other key", "undecodable"),
        ("lives 601 s", "lives longer than 10 minutes"),
        ("expired", "expired"),
        ("issued ahead", "issued in the future"),
        ("other app", "is not the app id"),
        ("alg none", "undecodable"),
        ("installation token", "undecodable"),
    ],
)
async def test_a_jwt_github_would_refuse_is_refused(
    fake_github: FakeGitHub, app: FakeApp, session: aiohttp.ClientSession, case: str, reason: str
) -> None:
    now, pem, iss = int(time.time()), app.private_key_pem, str(app.app_id)

    def signed(claims: dict[str, Any]) -> str:
        return jwt.encode(claims, pem, algorithm="RS256")

    made: dict[str, Callable[[], str]] = {
        "other key": lambda: get_jwt(app_id=iss, private_key=_other_key()),
        "lives 601 s": lambda: get_jwt(app_id=iss, private_key=pem, expiration=601),
        "expired": lambda: signed({"iat": now - 400, "exp": now - 1, "iss": iss}),
        "issued ahead": lambda: signed({"iat": now + 90, "exp": now + 300, "iss": iss}),
        "other app": lambda: get_jwt(app_id="4243", private_key=pem),
        "alg none": lambda: jwt.encode({"iat": now, "exp": now + 60, "iss": iss}, "", "none"),
        "installation token": lambda: app.issue(7).token,
    }
    token = made[case]()
    bearer = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{fake_github.url}/app", headers=bearer) as r:
        assert r.status == 401
        assert (await r.json())["message"] == "A JSON web token could not be decoded"
    [(refused, why)] = app.rejected_jwts
    assert refused == token and reason in why
    # The same App with a JWT at the limit of 10 minutes is fine.
    limit = get_jwt(app_id=iss, private_key=pem, expiration=600)
    async with session.get(
        f"{fake_github.url}/app", headers={"Authorization": f"bearer {limit}"}
    ) as r:
        assert r.status == 200 and len(app.rejected_jwts) == 1


async def test_installation_tokens_expire_on_the_apps_clock_and_can_be_revoked(
    fake_github: FakeGitHub, app: FakeApp, session: aiohttp.ClientSession
) -> None:
    clock = [time.time()]
    app.now = lambda: clock[0]
    app.token_lifetime = 2
    gh = GitHubAPI(session, "hobotnica-tests", base_url=fake_github.url)
    pem, iss = app.private_key_pem, str(app.app_id)
    first = await get_installation_access_token(
        gh, installation_id="7", app_id=iss, private_key=pem
    )
    assert (await post_status(session, fake_github, "octo/app", first["token"]))[0] == 201

    clock[0] += 3
    assert await post_status(session, fake_github, "octo/app", first["token"]) == (
        401,
        {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
    )
    second = await get_installation_access_token(
        gh, installation_id="7", app_id=iss, private_key=pem
    )
    assert (await post_status(session, fake_github, "octo/app", second["token"]))[0] == 201
    app.revoke_tokens()
    assert (await post_status(session, fake_github, "octo/app", second["token"]))[0] == 401
    forged = "ghs_" + "x" * 36
    assert (await post_status(session, fake_github, "octo/app", forged))[0] == 401
    path = f"/repos/octo/app/statuses/{SHA}"
    assert app.refused_tokens == [(path, "expired"), (path, "revoked"), (path, "unknown")]

    # Credentials not shaped like an installation token are not the App's business.
    assert (await post_status(session, fake_github, "octo/app", "ghs_testtoken0123"))[0] == 201
    app.suspend(7)
    async with session.post(
        f"{fake_github.url}/app/installations/7/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(app)}"},
    ) as r:
        assert r.status == 403
    assert len(fake_github.statuses) == 3


async def git(*args: str, cwd: Path, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """Real git, asynchronously (the fake answers on this same event loop); `auth` is
    (base URL, token) sent as GitHub takes it, `Basic base64(x-access-token:TOKEN)`."""
    environment = {**GIT_ENV, "GIT_TERMINAL_PROMPT": "0"}
    if auth is not None:
        base, token = auth
        user = "hobotnica" if token == "tok-123" else "x-access-token"
        credentials = base64.b64encode(f"{user}:{token}".encode()).decode()
        environment |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{base}/.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credentials}",
        }
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_git_clones_over_http_only_with_a_token_for_the_repository(
    fake_github: FakeGitHub, app: FakeApp, remote: Remote, remote_root: Path, tmp_path: Path
) -> None:
    fake_github.git_root = remote_root
    sha = remote.commit({"Makefile": "all:\n\ttrue\n"})
    base, url = fake_github.url, f"{fake_github.url}/octo/app.git"
    good, elsewhere = app.issue(7).token, app.issue(8).token

    assert (await git("clone", "-q", url, "anonymous", cwd=tmp_path))[0] != 0
    assert (await git("clone", "-q", url, "other", cwd=tmp_path, auth=(base, elsewhere)))[0] != 0
    code, out = await git("clone", "-q", url, "ok", cwd=tmp_path, auth=(base, good))
    assert code == 0, out
    assert (await git("rev-parse", "HEAD", cwd=tmp_path / "ok"))[1].strip() == sha
    code, out = await git("fetch", "-q", "origin", sha, cwd=tmp_path / "ok", auth=(base, good))
    assert code == 0, out  # by sha, as GitHub allows
    pushed = await git(
        "push", "origin", "HEAD:refs/heads/x", cwd=tmp_path / "ok", auth=(base, good)
    )
    assert pushed[0] != 0

    assert set(fake_github.git_authorizations) == {good, elsewhere}
    assert {reason for _, reason in fake_github.git_refused} == {
        "no Basic credentials",
        "does not cover octo/app",
        "receive-pack is not served",
    }

    # Token mode: the one token set on the fake, whatever the user name; no installation token.
    fake_github.git_token = "tok-123"
    code, out = await git("clone", "-q", url, "token-mode", cwd=tmp_path, auth=(base, "tok-123"))
    assert code == 0, out
    assert (await git("clone", "-q", url, "not-now", cwd=tmp_path, auth=(base, good)))[0] != 0


async def test_a_gzipped_upload_pack_request_gets_the_same_answer(
    fake_github: FakeGitHub, app: FakeApp, remote: Remote, remote_root: Path
) -> None:
    fake_github.git_root = remote_root
    sha = remote.commit({"a": "b"})
    ls_refs = b"0014command=ls-refs\n" + b"0001" + b"0000"  # protocol v2 pkt-lines
    credentials = base64.b64encode(f"x-access-token:{app.issue(7).token}".encode()).decode()
    headers = {
        "Authorization": f"Basic {credentials}",
        "Content-Type": "application/x-git-upload-pack-request",
        "Git-Protocol": "version=2",
    }
    answers = []
    async with aiohttp.ClientSession() as session:
        for body, encoding in [
            (ls_refs, {}),
            (gzip.compress(ls_refs), {"Content-Encoding": "gzip"}),
        ]:
            url = f"{fake_github.url}/octo/app.git/git-upload-pack"
            async with session.post(url, data=body, headers=headers | encoding) as r:
                answers.append((r.status, await r.read()))
    assert answers[0] == answers[1] and answers[0][0] == 200
    assert f"{sha} refs/heads/main".encode() in answers[0][1]


async def test_the_enterprise_shape_serves_rest_under_api_v3_and_graphql_beside_it(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeGitHub()
    app = fake.enable_app()
    app.install(7, "octo", ["octo/app"])
    server = await aiohttp_server(fake.app(prefix="/api/v3"))
    fake.url = str(server.make_url("")).rstrip("/")
    gh = GitHubAPI(session, "hobotnica-tests", base_url=fake.url + "/api/v3")

    found = await gh.getitem("/repos/octo/app/installation", jwt=app_jwt(app))
    assert found["access_tokens_url"] == f"{fake.url}/api/v3/app/installations/7/access_tokens"
    async with session.get(f"{fake.url}/repos/octo/app/installation") as r:
        assert r.status == 404
    async with session.post(f"{fake.url}/api/graphql", json={"query": "{ viewer { login } }"}) as r:
        assert r.status == 401  # reached the GraphQL endpoint, which knows no such user
    assert fake.requests == [
        ("GET", "/repos/octo/app/installation", "jwt"),
        ("GET", "/repos/octo/app/installation", "none"),
        ("POST", "/graphql", "none"),
    ]


async def test_lists_are_paginated_and_the_apps_deliveries_can_be_redelivered(
    fake_github: FakeGitHub, app: FakeApp, session: aiohttp.ClientSession
) -> None:
    app.install(9, "third", ["third/one"])
    gh = GitHubAPI(session, "hobotnica-tests", base_url=fake_github.url)
    pages = gh.getiter("/app/installations?per_page=2", jwt=app_jwt(app))
    installations = [i["id"] async for i in pages]
    assert installations == [7, 8, 9]
    token = app.issue(7).token
    names = [
        r["full_name"]
        async for r in gh.getiter(
            "/installation/repositories?per_page=1", iterable_key="repositories", oauth_token=token
        )
    ]
    assert names == ["octo/app", "octo/lib"]
    assert [p for _, p, _ in fake_github.requests].count("/installation/repositories") == 2

    delivery = HookDelivery(5, "guid-5", "push", 502, "2026-01-01T00:00:00Z", b"{}", 7, 1001)
    app.deliveries = [delivery]
    sent: list[HookDelivery] = []

    async def redeliver(d: HookDelivery) -> int:
        sent.append(d)
        return 202

    fake_github.redeliver = redeliver
    [listed] = await gh.getitem("/app/hook/deliveries", jwt=app_jwt(app))
    assert (listed["guid"], listed["installation_id"], listed["repository_id"]) == (
        "guid-5",
        7,
        1001,
    )
    await gh.post("/app/hook/deliveries/5/attempts", data=b"", jwt=app_jwt(app))
    assert sent == [delivery] and app.redelivery_requests == [5]
    assert fake_github.redelivery_requests == [] and app.deliveries[0].status_code == 202
