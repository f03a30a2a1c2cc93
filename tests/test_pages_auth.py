"""Who may look, over HTTP: sign-in by form (session cookie) or HTTP Basic, `[ui] public`, and
the cancel and re-run forms (a session and its CSRF token).
"""

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from structlog.testing import capture_logs

from runner.core.passwords import hash_password
from runner.web import auth
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import headers, push_payload
from tests.test_core_loop import wait_for_file

PASSWORD = "correct horse battery"
ALICE = {"alice": hash_password(PASSWORD, n=2**4, r=1, p=1)}
PRIVATE = {"users": ALICE}
HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
PROTECTED = [
    "/",
    "/octo/app",
    "/octo/app/badge.svg",
    "/builds/1",
    "/builds/1/events",
    "/api/builds/1",
    "/api/builds/1/log",
    "/metrics",
]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def a_build(d: Daemon, remote: Remote, fake_github: FakeGitHub, recipe: str = "@true") -> int:
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    status, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    assert status == 202
    if recipe == "@true":
        await fake_github.wait_final(sha)
    build_id: int = answer["builds"][0]
    return build_id


async def sign_in(d: Daemon, password: str = PASSWORD, next_page: str = "/") -> ClientResponse:
    assert d.client is not None
    form = {"username": "alice", "password": password, "next": next_page}
    return await d.client.post("/signin", data=form, allow_redirects=False)


async def csrf_of(d: Daemon, build_id: int) -> str:
    assert d.client is not None
    page = await (await d.client.get(f"/builds/{build_id}")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found[1]


async def test_every_page_needs_a_sign_in_by_default(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    assert d.client is not None
    await a_build(d, remote, fake_github)  # webhooks need no sign-in: they are signed

    for path in PROTECTED:
        response = await d.client.get(path, allow_redirects=False)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Hobotnica", charset="UTF-8"'
        browser = await d.client.get(path, headers={"Accept": HTML}, allow_redirects=False)
        assert browser.status == 303, path
        assert browser.headers["Location"].startswith("/signin?next=/")
        for wrong in (basic("alice", "wrong"), basic("mallory", PASSWORD), {"Authorization": "x"}):
            assert (await d.client.get(path, headers=wrong)).status == 401, (path, wrong)
        assert (await d.client.get(path, headers=basic("alice", PASSWORD))).status == 200, path
    for open_path in ("/health", "/signin", "/static/app.css"):
        assert (await d.client.get(open_path)).status == 200, open_path


async def test_signing_in_sets_a_session_cookie_that_opens_the_pages(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    assert d.client is not None
    build_id = await a_build(d, remote, fake_github)

    with capture_logs() as logs:
        refused = await sign_in(d, password="not the password")
    assert refused.status == 401
    assert "Wrong user name or password" in await refused.text()
    assert "not the password" not in repr(logs)
    assert any(e["event"] == "sign-in failed" and e["user"] == "alice" for e in logs)
    assert "hobotnica_session" not in refused.cookies

    response = await sign_in(d, next_page=f"/builds/{build_id}")
    assert response.status == 303 and response.headers["Location"] == f"/builds/{build_id}"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie  # public_url is http here
    page = await d.client.get(f"/builds/{build_id}")
    assert page.status == 200 and ">alice<" in await page.text()
    assert (await d.client.get("/metrics")).status == 200

    csrf = re.search(r'name="csrf" value="([^"]+)"', await (await d.client.get("/")).text())
    assert csrf is not None
    signed_out = await d.client.post("/signout", data={"csrf": csrf[1]}, allow_redirects=False)
    assert signed_out.status == 303
    assert (await d.client.get("/")).status == 401


async def test_sign_in_goes_back_only_to_this_site(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:x"):
        response = await sign_in(d, next_page=target)
        assert (response.status, response.headers["Location"]) == (303, "/"), target


async def test_secure_cookie_when_the_public_url_is_https(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(ui=PRIVATE)
    server = dataclasses.replace(settings.server, public_url="https://ci.example.com")
    d = await daemon(dataclasses.replace(settings, server=server))

    response = await sign_in(d)

    assert response.status == 303 and "Secure" in response.headers["Set-Cookie"]


async def test_public_pages_need_no_sign_in_but_changes_still_do(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings(ui={"public": True, "users": ALICE}))
    assert d.client is not None
    build_id = await a_build(d, remote, fake_github)

    for path in PROTECTED:
        assert (await d.client.get(path)).status == 200, path
    page = await (await d.client.get(f"/builds/{build_id}")).text()
    assert "Re-run" not in page and 'href="/signin?next=' in page
    rerun = await d.client.post(f"/builds/{build_id}/rerun", data={})
    assert rerun.status == 401


async def test_cancel_and_rerun_need_a_session_and_its_csrf_token(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    assert d.client is not None
    sha = remote.commit({"Makefile": makefile(test=wait_for_file(tmp_path / "never"))})
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    build_id = answer["builds"][0]
    await fake_github.wait_running(sha)
    cancel = f"/builds/{build_id}/cancel"

    # HTTP Basic alone cannot change anything: browsers send it with cross-site forms too.
    with_basic = await d.client.post(cancel, data={}, headers=basic("alice", PASSWORD))
    assert with_basic.status == 401
    await sign_in(d)
    csrf = await csrf_of(d, build_id)
    assert (await d.client.post(cancel, data={})).status == 403
    assert (await d.client.post(cancel, data={"csrf": csrf + "x"})).status == 403
    foreign: dict[str, Any] = {"Origin": "https://evil.example"}
    assert (await d.client.post(cancel, data={"csrf": csrf}, headers=foreign)).status == 403
    assert (await d.build(build_id))["state"] == "running"

    cancelled = await d.client.post(cancel, data={"csrf": csrf}, allow_redirects=False)
    assert cancelled.status == 303
    assert cancelled.headers["Location"] == f"/builds/{build_id}?notice=cancelling"
    final = await fake_github.wait_final(sha)
    assert (final.state, final.description) == ("error", "Cancelled by alice")
    page = await (await d.client.get(cancelled.headers["Location"])).text()
    assert "Cancelled." in page and "being stopped" not in page  # it has stopped by now

    rerun = await d.client.post(
        f"/builds/{build_id}/rerun", data={"csrf": csrf}, allow_redirects=False
    )
    assert rerun.status == 303
    new_id = int(rerun.headers["Location"].split("/")[2].split("?")[0])
    assert new_id > build_id
    new = await d.build(new_id)
    assert (new["sha"], new["branch"], new["job"]) == (sha, "feature", "test")
    await fake_github.wait_until(
        lambda: any(s.target_url.endswith(f"/builds/{new_id}") for s in fake_github.statuses)
    )
    assert (await d.client.post(f"/builds/{new_id}/cancel", data={"csrf": csrf})).status == 200


async def test_a_webhook_is_never_behind_the_sign_in(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    body = b'{"zen": "Design for failure.", "hook_id": 1}'

    status, _ = await d.post_raw(body, headers(body, "It's a Secret to Everybody", "ping"))

    assert status == 200


@pytest.mark.parametrize("user", ["alice", "nobody"])
async def test_a_failed_sign_in_names_only_known_users(
    daemon: DaemonFactory, make_settings: SettingsFactory, user: str
) -> None:
    d = await daemon(make_settings(ui=PRIVATE))
    assert d.client is not None

    with capture_logs() as logs:
        form = {"username": user, "password": "guess-1234", "next": "/"}
        response = await d.client.post("/signin", data=form)

    assert response.status == 401
    (failed,) = [e for e in logs if e["event"] == "sign-in failed"]
    assert failed["user"] == (user if user == "alice" else None)
    assert "guess-1234" not in repr(logs) and "guess-1234" not in await response.text()


async def test_passwords_are_checked_once_per_credential_and_never_on_public_pages(
    daemon: DaemonFactory, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    original = auth._matches

    def counted(password: str, encoded: str) -> bool:
        checks.append(password)
        return original(password, encoded)

    monkeypatch.setattr(auth, "_matches", counted)
    private = await daemon(make_settings(ui=PRIVATE))
    assert private.client is not None
    for _ in range(3):
        assert (await private.client.get("/", headers=basic("alice", PASSWORD))).status == 200
        assert (await private.client.get("/", headers=basic("alice", "stale"))).status == 401
    assert checks == [PASSWORD, "stale"]  # a scraper with a stale password costs one check
    await private.stop()

    checks.clear()
    public = await daemon(make_settings(ui={"public": True, "users": ALICE}))
    assert public.client is not None
    assert (await public.client.get("/", headers=basic("mallory", "x"))).status == 200
    assert checks == []
