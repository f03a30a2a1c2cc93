"""Hobotnica installed as a GitHub App, end to end against the fake GitHub's App endpoints.

The fake checks every JWT with the App's public key (RS256, `iss`, at most 10 minutes) and
issues installation tokens that expire on its own clock and can be revoked; repositories are
served over smart HTTP by a real `git http-backend` that demands an installation token, so a
clone with anything else (or through a `file://` URL) would fail.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from runner.core.settings import Settings
from runner.store import Store
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.api import ApiClient
from tests.support.fake_github import FakeGitHub, HookDelivery, StatusPost
from tests.support.fake_github_app import FakeApp
from tests.support.gitrepo import Remote, makefile
from tests.support.logcapture import daemon_log
from tests.support.webhooks import headers, push_payload
from tests.test_pages_browser import base_url, browser

__all__ = ["browser"]  # the fixture, shared with the page tests

INSTALLATION = 7001
PASSING = makefile(test="@echo testing as the app $$HOBOTNICA_SHA")


def app_settings(
    settings: Settings,
    app: FakeApp,
    key_file: Path,
    *,
    api_url: str,
    git_url: str,
    token: str | None = None,
    auto_register: bool = False,
) -> Settings:
    key_file.write_text(app.private_key_pem)
    key_file.chmod(0o600)
    github = dataclasses.replace(
        settings.github,
        api_url=api_url,
        git_url=git_url,
        token=token,
        app_id=app.app_id,
        private_key_file=key_file,
        app_private_key=app.private_key_pem,
        auto_register=auto_register,
    )
    return dataclasses.replace(settings, github=github)


def as_app(payload: dict[str, Any], app: FakeApp, installation: int = INSTALLATION) -> bytes:
    """What GitHub sends through an App's webhook: the installation beside the event."""
    payload["installation"] = {
        "id": installation,
        "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u",
    }
    return json.dumps(payload).encode()


def app_headers(
    body: bytes, event: str, app: FakeApp, delivery: str | None = None
) -> dict[str, str]:
    return {
        **headers(body, SECRET, event, delivery),
        "X-GitHub-Hook-ID": "420000001",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(app.app_id),
    }


@pytest.fixture
def app(fake_github: FakeGitHub, remote_root: Path) -> FakeApp:
    fake_app = fake_github.enable_app()
    fake_app.install(INSTALLATION, "octo", ["octo/app"])
    fake_github.git_root = remote_root  # the remotes, over HTTP through git http-backend
    return fake_app


def secrets_of(app: FakeApp) -> list[str]:
    """What must never leave the daemon: every token issued, and the key's lines."""
    key_lines = [line for line in app.private_key_pem.splitlines() if "-----" not in line]
    return [*app.issued, *key_lines]


async def test_a_push_is_cloned_and_reported_with_the_installation_token(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    settings = app_settings(
        make_settings(), app, tmp_path / "app.pem", api_url=fake_github.url, git_url=fake_github.url
    )
    sha = remote.commit(
        {"Makefile": makefile(test="@echo testing; env; cat $$HOME/../*.pem || true")}
    )
    with daemon_log() as log:
        d = await daemon(settings)
        body = as_app(push_payload("octo/app", sha), app)
        status, answer = await d.post_raw(body, app_headers(body, "push", app))
        assert status == 202
        final = await fake_github.wait_final(sha)
        build_log = await d.log(answer["builds"][0])
        page = await d.page(answer["builds"][0])
        await d.stop()

    assert final.state == "success", build_log
    assert app.rejected_jwts == [] and app.refused_tokens == []
    assert len(app.issued) == 1  # one token, shared by the clone and every status
    token = app.issued[0]
    assert {s.authorization for s in fake_github.statuses} == {f"token {token}"}
    # git asked the HTTP server with the installation token, and was let in.
    assert fake_github.git_authorizations and set(fake_github.git_authorizations) == {token}
    assert fake_github.git_refused == []
    # Found from the webhook's installation: no lookup of the repository's installation.
    assert ("GET", "/repos/octo/app/installation") not in {r[:2] for r in fake_github.requests}
    for secret in secrets_of(app):
        assert secret not in build_log
        assert secret not in page
        assert secret not in log.getvalue()


async def test_a_token_github_revoked_is_replaced_and_no_status_is_lost(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    settings = app_settings(
        make_settings(), app, tmp_path / "app.pem", api_url=fake_github.url, git_url=fake_github.url
    )
    first = remote.commit({"Makefile": PASSING}, branch="first")
    d = await daemon(settings)
    await d.deliver("push", push_payload("octo/app", first, branch="first"))
    assert (await fake_github.wait_final(first)).state == "success"

    app.revoke_tokens()  # an administrator revoked it, or GitHub did
    posted_before = len(fake_github.statuses)
    # The same commit on another branch: in the mirror already, so the status post is the first
    # request with the revoked token.
    await d.deliver("push", push_payload("octo/app", first, branch="again"))

    def again_final() -> list[StatusPost]:
        later = fake_github.statuses[posted_before:]
        return [s for s in later if s.sha == first and s.state != "pending"]

    await fake_github.wait_until(lambda: bool(again_final()))
    assert again_final()[0].state == "success"
    assert app.refused_tokens and {reason for _path, reason in app.refused_tokens} == {"revoked"}
    assert len(app.issued) == 2  # one new token, after the first 401
    # Every state of the build reached GitHub, each with the new token: none was dropped.
    later = fake_github.statuses[posted_before:]
    assert {s.authorization for s in later} == {f"token {app.issued[1]}"}
    assert [s.state for s in later][-1] == "success"
    await d.stop()


async def test_a_token_that_expired_on_github_is_fetched_again_after_one_401(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    settings = app_settings(
        make_settings(), app, tmp_path / "app.pem", api_url=fake_github.url, git_url=fake_github.url
    )
    first = remote.commit({"Makefile": PASSING}, branch="first")
    d = await daemon(settings)
    await d.deliver("push", push_payload("octo/app", first, branch="first"))
    assert (await fake_github.wait_final(first)).state == "success"

    # GitHub says the token expired (a clock that drifted, a token cut short) while the daemon
    # still counts on it.
    (token,) = app.issued
    app.tokens[token] = dataclasses.replace(app.tokens[token], expires=app.now() - 1)
    second = remote.commit({"Makefile": PASSING}, branch="second")
    await d.deliver("push", push_payload("octo/app", second, branch="second"))

    assert (await fake_github.wait_final(second)).state == "success"
    assert len(app.issued) == 2
    # The fetch of the new commit met the expired token first; git got the new one at once.
    assert [reason for _path, reason in fake_github.git_refused] == ["expired"]
    assert set(fake_github.git_authorizations) == set(app.issued)
    assert {s.authorization for s in fake_github.for_commit(second)} == {f"token {app.issued[1]}"}
    assert app.rejected_jwts == []
    await d.stop()


async def test_the_whole_loop_on_github_enterprise_under_api_v3(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    remote: Remote,
    remote_root: Path,
    tmp_path: Path,
    aiohttp_server: Any,
) -> None:
    enterprise = FakeGitHub()
    app = enterprise.enable_app()
    app.install(INSTALLATION, "octo", ["octo/app"])
    enterprise.git_root = remote_root
    server = await aiohttp_server(enterprise.app(prefix="/api/v3"))
    enterprise.url = str(server.make_url("")).rstrip("/")
    settings = app_settings(
        make_settings(ui={"public": True}),
        app,
        tmp_path / "app.pem",
        api_url=f"{enterprise.url}/api/v3",
        git_url=enterprise.url,
    )
    sha = remote.commit({"Makefile": PASSING})
    d = await daemon(settings)

    payload = push_payload("octo/app", sha)
    before = "b" * 40  # the branch's head before this push
    payload.update(before=before, created=False)
    status, answer = await d.deliver("push", payload)  # a repository hook's: no installation

    assert status == 202
    assert (await enterprise.wait_final(sha)).state == "success"
    # The page links to the commit and branch on the Enterprise server, never github.com.
    page = await d.page(answer["builds"][0])
    assert f'href="{enterprise.url}/octo/app/commit/{sha}"' in page
    assert f'href="{enterprise.url}/octo/app/tree/main"' in page
    compare_link = f'href="{enterprise.url}/octo/app/compare/{before}...{sha}"'
    assert compare_link in page  # the push's changes
    assert "github.com" not in page
    assert d.client is not None
    commit_link = f'href="{enterprise.url}/octo/app/commit/{sha}"'
    for path in ("/", "/octo/app", "/builds"):  # the lists link each commit there too
        listing = await (await d.client.get(path)).text()
        assert commit_link in listing and "github.com" not in listing, path
    for path in ("/", "/octo/app", "/builds"):  # and the push's changes
        assert compare_link in await (await d.client.get(path)).text(), path
    # In a browser: the links lead to the Enterprise server's pages.
    tab = await browser.new_page()
    await tab.goto(f"{base_url(d)}/builds/{answer['builds'][0]}")
    compare_url = f"{enterprise.url}/octo/app/compare/{before}...{sha}"
    await expect(tab.locator("#compare-link")).to_have_attribute("href", compare_url)
    await tab.click("a[href$='/commit/" + sha + "']")
    await expect(tab).to_have_url(f"{enterprise.url}/octo/app/commit/{sha}")
    await tab.close()
    assert f'href="{enterprise.url}/octo/app"' in await (await d.client.get("/octo/app")).text()
    asked = {(method, path) for method, path, _auth in enterprise.requests}
    assert ("GET", "/repos/octo/app/installation") in asked  # found by asking, with the JWT
    assert ("POST", f"/app/installations/{INSTALLATION}/access_tokens") in asked
    assert set(enterprise.git_authorizations) == {app.issued[0]}
    assert app.rejected_jwts == []
    await d.stop()


async def test_installations_register_and_retire_repositories(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    from tests.support.gitrepo import make_remote

    service = make_remote(remote_root, "octo-org/service")
    sha = service.commit({"Makefile": PASSING})
    make_remote(remote_root, "octo-org/docs").commit({"Makefile": PASSING})
    make_remote(remote_root, "elsewhere/tool").commit({"Makefile": PASSING})
    settings = app_settings(
        make_settings(projects=[]),
        app,
        tmp_path / "app.pem",
        api_url=fake_github.url,
        git_url=fake_github.url,
        auto_register=True,
    )
    d = await daemon(settings)
    store = _store(d)
    assert await store.registration("octo-org/service") is None

    # The App is installed on two repositories; only octo-org is in api.allowed_owners.
    app.install(8001, "octo-org", ["octo-org/service", "octo-org/docs", "elsewhere/tool"])
    event = {
        "action": "created",
        "installation": {"id": 8001, "account": {"login": "octo-org"}},
        "repositories": [{"full_name": "octo-org/service"}, {"full_name": "elsewhere/tool"}],
        "sender": {"login": "octocat"},
    }
    body = json.dumps(event).encode()
    status, answer = await d.post_raw(body, app_headers(body, "installation", app))
    assert (status, answer["builds"]) == (202, [])
    assert answer["ignored"] == "the registrations follow the App's installations"
    registered = await _wait_registration(d, "octo-org/service", "ready")
    assert registered.installation_id == 8001 and registered.token is None
    assert await store.registration("elsewhere/tool") is None

    # Its pushes come through the App's webhook, and are built and reported as the App.
    body = as_app(push_payload("octo-org/service", sha), app, installation=8001)
    status, _ = await d.post_raw(body, app_headers(body, "push", app))
    assert status == 202
    final = await fake_github.wait_final(sha)
    assert final.state == "success"
    assert final.authorization.removeprefix("token ") in app.issued
    # Removing it through the REST API would be undone by the installation: refused, saying so.
    fake_github.add_user("ghp_alice_token_0123456789", "alice")
    fake_github.grant("alice", "octo-org/service", "ADMIN")
    api = ApiClient(d.client, "ghp_alice_token_0123456789", "alice")
    refused = await api.call("DELETE", "/api/repositories/octo-org/service")
    assert refused.status == 409 and "installation" in refused.body["detail"]

    # Removed from the installation: retired, as an API removal retires one.
    app.remove_repositories(8001, ["octo-org/service"])
    event = {
        "action": "removed",
        "installation": {"id": 8001, "account": {"login": "octo-org"}},
        "repository_selection": "selected",
        "repositories_added": [],
        "repositories_removed": [{"full_name": "octo-org/service"}],
        "sender": {"login": "octocat"},
    }
    body = json.dumps(event).encode()
    await d.post_raw(body, app_headers(body, "installation_repositories", app))
    await _wait_until_gone(d, "octo-org/service")
    assert not (settings.data_dir / "mirrors" / "octo-org" / "service.git").exists()
    assert (await store.registration("octo-org/docs")) is not None

    # Suspended: everything it registered is retired, though its cached token still looks good.
    app.suspend(8001)
    event = {
        "action": "suspend",
        "installation": {"id": 8001, "account": {"login": "octo-org"}},
        "sender": {"login": "octocat"},
    }
    body = json.dumps(event).encode()
    await d.post_raw(body, app_headers(body, "installation", app))
    await _wait_until_gone(d, "octo-org/docs")
    await d.stop()


async def test_deliveries_the_app_missed_are_asked_for_again(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    settings = app_settings(
        make_settings(), app, tmp_path / "app.pem", api_url=fake_github.url, git_url=fake_github.url
    )
    missed = remote.commit({"Makefile": PASSING}, branch="missed")
    body = as_app(push_payload("octo/app", missed, branch="missed"), app)
    app.deliveries = [HookDelivery(31, "guid-missed-by-app", "push", 0, _now_iso(), body)]
    d = await daemon(settings)

    async def redeliver(delivery: HookDelivery) -> int:
        status, _ = await d.post_raw(
            delivery.body, app_headers(delivery.body, "push", app, delivery.guid)
        )
        return status

    fake_github.redeliver = redeliver
    await d.stop()
    await d.start()  # catch-up runs at start

    assert (await fake_github.wait_final(missed)).state == "success"
    assert app.redelivery_requests == [31]
    # The App's hook is the App's: it is never listed as a repository's hook.
    assert not any("/hooks/420000001" in path for _method, path, _auth in fake_github.requests)
    await d.stop()


def _store(d: Any) -> Store:
    from runner.app import STORE

    store: Store = d.client.app[STORE]
    return store


async def _wait_registration(d: Any, name: str, status: str) -> Any:
    import asyncio

    async with asyncio.timeout(60):
        while True:
            registered = await _store(d).registration(name)
            if registered is not None and registered.status == status:
                return registered
            await asyncio.sleep(0.05)


async def _wait_until_gone(d: Any, name: str) -> None:
    import asyncio

    async with asyncio.timeout(60):
        while await _store(d).registration(name) is not None:
            await asyncio.sleep(0.05)


def _now_iso() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
