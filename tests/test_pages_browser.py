"""The pages in a real browser: Debian's chromium driven by Playwright, against a real daemon.

- A build that prints a line a second: its open page shows the new lines, then the final
  state, without a reload (a marker set in the page survives), and the buttons switch.
- A configured secret never appears in the DOM, also not in what arrived live.
- The dashboard and the badge show the result; the pages fit a phone's width.
- Sign-in is required unless `[ui] public = true`; Cancel works from the page.
- A finished build's page works without JavaScript.

Chromium is `/usr/bin/chromium` (`.ci/run` installs it); Playwright's own browsers are never
downloaded. If chromium cannot start, these tests fail: they are not skipped. Screenshots go to
`test-artifacts/screenshots/` (not committed; two of them are in docs/screenshots/).
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from runner.core.passwords import hash_password
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.webhooks import pull_request_payload, push_payload
from tests.test_core_loop import wait_for_file

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
WAIT_MS = 60_000  # generous: a shared 2-core machine; Playwright's expect polls until then
PASSWORD = "correct horse battery"
USERS = {"alice": hash_password(PASSWORD, n=2**4, r=1, p=1)}
SECRET_VALUE = "hunter2-deploy-token"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        await chromium.close()


def base_url(d: Daemon) -> str:
    assert d.client is not None
    return str(d.client.make_url("")).rstrip("/")


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


async def sign_in_on_the_form(page: Page) -> None:
    await expect(page.locator("form.signin")).to_be_visible()
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.signin button[type=submit]")


async def test_a_running_build_streams_its_lines_and_final_state_without_a_reload(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    recipe = "\n".join(
        [
            "@printf '\\033[1;34m==>\\033[0m Running the test suite\\n'",
            "@printf 'test_login ... \\033[32mok\\033[0m\\n'",
            wait_for_file(gate),
            "@for i in 2 3 4 5; do printf 'test_step_%s ... \\033[32mok\\033[0m\\n' $$i; "
            "sleep 1; done",
            '@echo "uploading with token=$$API_KEY"',
            "@printf '\\033[33mwarning:\\033[0m <b>not bold</b> stays text\\n'",
            "@printf '\\033[1;32m5 passed\\033[0m\\n'",
        ]
    )
    sha = remote.commit(
        {"Makefile": makefile(test=recipe)}, branch="feature", message="Add the login tests"
    )
    project = {"repository": "octo/app", "secrets": {"API_KEY": SECRET_VALUE}}
    d = await daemon(make_settings([project], ui={"users": USERS}))
    payload = push_payload("octo/app", sha, branch="feature", message="Add the login tests")
    _, answer = await d.deliver("push", payload)
    build_id = answer["builds"][0]
    await fake_github.wait_running(sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/builds/{build_id}")
    assert "/signin?next=" in page.url  # pages need a sign-in
    await sign_in_on_the_form(page)
    await page.wait_for_url(f"**/builds/{build_id}")
    log = page.locator("#log")
    state = page.locator("h1 [data-build-state]")
    await expect(state).to_have_text("running", timeout=WAIT_MS)
    await expect(log).to_contain_text("test_login ... ok", timeout=WAIT_MS)
    await expect(log).not_to_contain_text("test_step_2")
    await page.evaluate("window.notReloaded = true")

    gate.touch()  # the build goes on: a line a second
    await expect(log).to_contain_text("test_step_3 ... ok", timeout=WAIT_MS)
    await screenshot(page, "build-running")
    await expect(state).to_have_text("success", timeout=WAIT_MS)
    await expect(log).to_contain_text("5 passed")
    assert await page.evaluate("window.notReloaded === true")
    await expect(page.locator("#description")).to_contain_text("make test passed")
    await expect(page.locator("#finished")).not_to_have_text("not yet")
    await expect(page.get_by_role("button", name="Re-run")).to_be_visible()
    await expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    # Live lines are numbered and linkable like the rest, colours are spans, text stays text.
    line = page.locator("#log .l", has_text="test_step_4")
    assert (await line.get_attribute("id") or "").startswith("L")
    await expect(line.locator("span.f2")).to_have_text("ok")
    await expect(log.locator("b")).to_have_count(0)
    await expect(log).to_contain_text("<b>not bold</b> stays text")

    content = await page.content()
    assert SECRET_VALUE not in content
    assert "token=***" in content
    await screenshot(page, "build-finished")

    await page.goto(f"{base_url(d)}/")
    card = page.get_by_role("region", name="octo/app")
    await expect(card.get_by_text("test: success")).to_be_visible()
    assert SECRET_VALUE not in await page.content()
    badge = await page.goto(f"{base_url(d)}/octo/app/badge.svg?branch=feature")
    assert badge is not None and badge.status == 200
    assert ">passing</text>" in await badge.text()


async def test_dashboard_and_badges_show_every_repository_and_fit_a_phone(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    remote_root: Path,
    tmp_path: Path,
) -> None:
    site = make_remote(remote_root, "octo/site")
    projects = [{"repository": "octo/app"}, {"repository": "octo/site"}]
    d = await daemon(make_settings(projects))
    passing = makefile(test="@echo 12 passed", deploy="@echo deployed")

    main = remote.commit({"Makefile": passing}, message="Release the new login page")
    await d.deliver("push", push_payload("octo/app", main, message="Release the new login page"))
    await fake_github.wait_final(main, "hobotnica/deploy")
    red = remote.commit(
        {"Makefile": makefile(test="@echo 1 failed; exit 1")},
        branch="fix/flaky-test",
        message="Retry the flaky test",
    )
    await d.deliver(
        "push",
        push_payload("octo/app", red, branch="fix/flaky-test", message="Retry the flaky test"),
    )
    await fake_github.wait_final(red)
    topic = remote.commit({"Makefile": passing}, branch="topic", message="Dark mode")
    remote.push_pull_ref(12, topic)
    await d.deliver(
        "pull_request", pull_request_payload("octo/app", topic, number=12, branch="topic")
    )
    await fake_github.wait_final(topic)
    gate = tmp_path / "gate"
    site_sha = site.commit({"Makefile": makefile(test=wait_for_file(gate))})
    _, answer = await d.deliver("push", push_payload("octo/site", site_sha, branch="redesign"))
    running_id = answer["builds"][0]
    await fake_github.wait_running(site_sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/")
    app_card = page.get_by_role("region", name="octo/app")
    await expect(app_card.get_by_text("test: success").first).to_be_visible()
    await expect(app_card.get_by_text("deploy: success")).to_be_visible()
    await expect(app_card.get_by_text("test: failure")).to_be_visible()
    await expect(app_card.get_by_text("pull request #12")).to_be_visible()
    badge = app_card.get_by_role("img")
    await expect(badge).to_have_attribute("alt", "main: success")
    assert await badge.evaluate("image => image.complete && image.naturalWidth > 0")
    running = page.get_by_role("link", name=f"#{running_id}")  # octo/site, under "running"
    await expect(running).to_be_visible()
    await screenshot(page, "dashboard")

    for name, state in (("main", "passing"), ("fix/flaky-test", "failing"), ("nope", "unknown")):
        response = await page.goto(f"{base_url(d)}/octo/app/badge.svg?branch={name}")
        assert response is not None
        assert f">{state}</text>" in await response.text(), name

    phone = await browser.new_page(viewport=PHONE)
    for name, path in (("dashboard", "/"), ("repository", "/octo/app"), ("build", "/builds/1")):
        await phone.goto(f"{base_url(d)}{path}")
        await expect(phone.locator("main")).to_be_visible()
        fits = await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, f"{path} is wider than a phone"
        await screenshot(phone, f"phone-{name}")
    gate.touch()
    await fake_github.wait_final(site_sha)


async def test_sign_in_is_required_unless_public(
    browser: Browser, daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    private = await daemon(make_settings(ui={"users": USERS}))
    page = await browser.new_page()
    await page.goto(f"{base_url(private)}/octo/app")
    assert "/signin?next=/octo/app" in page.url
    await screenshot(page, "sign-in")
    metrics = await page.request.get(f"{base_url(private)}/metrics")
    assert metrics.status == 401 and metrics.headers["www-authenticate"].startswith("Basic")
    await sign_in_on_the_form(page)
    await page.wait_for_url("**/octo/app")
    await expect(page.locator("h1")).to_have_text("octo/app")
    assert (await page.request.get(f"{base_url(private)}/metrics")).status == 200
    await private.stop()

    public = await daemon(make_settings(ui={"public": True}))
    other = await browser.new_page()
    response = await other.goto(f"{base_url(public)}/octo/app")
    assert response is not None and response.status == 200
    await expect(other.locator("h1")).to_have_text("octo/app")
    await expect(other.get_by_role("link", name="Sign in")).to_have_count(0)  # no users


async def test_cancel_from_the_page_stops_the_build(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    sha = remote.commit(
        {"Makefile": makefile(test=f"@echo waiting\n{wait_for_file(tmp_path / 'never')}")},
        branch="feature",
    )
    d = await daemon(make_settings(ui={"users": USERS}))
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    build_id = answer["builds"][0]
    await fake_github.wait_running(sha)

    page = await browser.new_page()
    await page.goto(f"{base_url(d)}/signin?next=/builds/{build_id}")
    await sign_in_on_the_form(page)
    await expect(page.locator("#log")).to_contain_text("waiting", timeout=WAIT_MS)
    await page.get_by_role("button", name="Cancel").click()

    await expect(page.locator(".notice")).to_contain_text("Cancelling")
    await expect(page.locator("h1 [data-build-state]")).to_have_text("error", timeout=WAIT_MS)
    await expect(page.locator("#description")).to_have_text("Cancelled by alice")
    assert (await fake_github.wait_final(sha)).description == "Cancelled by alice"


async def test_a_finished_build_page_works_without_javascript(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@echo all good")}, branch="feature")
    d = await daemon(make_settings())
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{base_url(d)}/builds/{answer['builds'][0]}#L3")

    await expect(page.locator("h1 [data-build-state]")).to_have_text("success")
    await expect(page.locator("#log")).to_contain_text("all good")
    await expect(page.locator("#L3")).to_contain_text("all good")
    await expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    await context.close()


async def test_a_live_page_keeps_the_newest_lines_of_a_huge_log(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    recipe = f"@echo start\n{wait_for_file(gate)}\n@seq 1 40000\n@echo the end"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    d = await daemon(make_settings())
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_running(sha)

    page = await browser.new_page()
    await page.goto(f"{base_url(d)}/builds/{answer['builds'][0]}")
    await expect(page.locator("#log")).to_contain_text("start", timeout=WAIT_MS)
    gate.touch()

    await expect(page.locator("h1 [data-build-state]")).to_have_text("success", timeout=WAIT_MS)
    lines = page.locator("#log .l")
    assert await lines.count() == 30_000  # the page keeps the newest (build.js MAX_LINES)
    await expect(lines.last).to_contain_text("make test exited 0")
    await expect(page.locator("#log")).to_contain_text("the end")
    await expect(page.locator("#trimmed")).to_be_visible()
