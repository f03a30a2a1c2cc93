"""Issue 19's page elements in a real browser (Debian's chromium, Playwright): the builds page
across repositories and its filters, lineage links both ways, a repository's duration chart, a
running build's time counting up, and finding a text in a build's log."""

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from runner.app import CONTROL
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.webhooks import push_payload
from tests.test_core_loop import wait_for_file
from tests.test_pages_browser import DESKTOP, WAIT_MS, base_url, browser, screenshot

__all__ = ["browser"]  # the fixture, shared with the other page tests


async def test_the_builds_page_filters_by_repository_and_state(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    remote_root: Path,
) -> None:
    lib = make_remote(remote_root, "octo/lib")
    app_sha = remote.commit({"Makefile": makefile(test="@true")}, branch="feature")
    lib_sha = lib.commit({"Makefile": makefile(test="@exit 3")}, branch="main")
    projects = [{"repository": "octo/app"}, {"repository": "octo/lib"}]
    d = await daemon(make_settings(projects, ui={"public": True}))
    await d.deliver("push", push_payload("octo/app", app_sha, branch="feature"))
    await d.deliver("push", push_payload("octo/lib", lib_sha, branch="main"))
    await fake_github.wait_final(app_sha)
    await fake_github.wait_final(lib_sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/")
    await page.click("header nav a[href='/builds']")
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(2, timeout=WAIT_MS)
    await screenshot(page, "builds")

    await page.select_option("select[name=state]", "failure")
    await page.click("form.filters button[type=submit]")
    await expect(page).to_have_url(
        f"{base_url(d)}/builds?repository=&branch=&job=&state=failure&author="
    )
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows.first).to_contain_text("octo/lib")

    await page.select_option("select[name=state]", "")
    await page.select_option("select[name=repository]", "octo/app")
    await page.click("form.filters button[type=submit]")
    await expect(rows).to_have_count(1, timeout=WAIT_MS)
    await expect(rows.first).to_contain_text("feature")
    await page.close()
    await d.stop()


async def test_lineage_links_a_test_its_deploy_and_its_re_run_both_ways(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@true", deploy="@echo deployed")})
    d = await daemon(make_settings(ui={"public": True}))
    await d.deliver("push", push_payload("octo/app", sha))  # main: the deploy branch
    assert (await fake_github.wait_final(sha, "hobotnica/deploy")).state == "success"
    assert d.client is not None
    rerun = await d.client.app[CONTROL].rerun(1, by="alice")
    assert rerun.build_id == 3

    test_build = await (await d.client.get("/api/builds/1")).json()
    deploy_build = await (await d.client.get("/api/builds/2")).json()
    again = await (await d.client.get("/api/builds/3")).json()
    assert (test_build["deploy_build_ids"], test_build["rerun_build_ids"]) == ([2], [3])
    assert (deploy_build["test_build_id"], again["rerun_of"]) == (1, 1)
    assert (test_build["asked_by"], again["asked_by"]) == (None, "alice")

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/builds/1")
    await page.click("#lineage a[href='/builds/2']")
    await expect(page).to_have_url(f"{base_url(d)}/builds/2")
    await expect(page.locator("#lineage")).to_contain_text("deploys after the tests of #1")
    await page.click("#lineage a[href='/builds/1']")
    await expect(page.locator("#lineage")).to_contain_text("run again as #3")
    await page.click("#lineage a[href='/builds/3']")
    await expect(page.locator("#lineage")).to_contain_text("a re-run of #1")
    await expect(page.locator("#asked-by")).to_have_text("alice, who ran it again")
    await page.close()
    await d.stop()


async def test_a_repository_page_charts_its_last_builds_durations_by_outcome(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    d = await daemon(make_settings(ui={"public": True}))
    outcomes = ["@true", "@exit 1", "@sleep 0.3"]
    for n, recipe in enumerate(outcomes):
        sha = remote.commit({"Makefile": makefile(test=recipe), "n": str(n)}, branch=f"b{n}")
        await d.deliver("push", push_payload("octo/app", sha, branch=f"b{n}"))
        await fake_github.wait_final(sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/octo/app")

    bars = page.locator("figure.durations rect.bar")
    await expect(bars).to_have_count(3, timeout=WAIT_MS)
    classes = [await bar.get_attribute("class") for bar in await bars.all()]
    assert classes == ["bar success", "bar failure", "bar success"]  # oldest first
    heights = [float(await bar.get_attribute("height") or 0) for bar in await bars.all()]
    assert heights[2] == max(heights)  # the build that slept took longest
    await expect(page.locator("figure.durations a").first).to_have_attribute("href", "/builds/1")
    await screenshot(page, "repository-durations")
    await page.close()
    await d.stop()


async def test_a_running_builds_time_counts_up_on_its_page(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    sha = remote.commit({"Makefile": makefile(test=wait_for_file(gate))}, branch="slow")
    d = await daemon(make_settings(ui={"public": True}))
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="slow"))
    await fake_github.wait_running(sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/builds/{answer['builds'][0]}")
    ran = page.locator("#ran")
    await expect(ran).to_have_text(re.compile(r"^running for \d+ s$"), timeout=WAIT_MS)
    first = await ran.text_content()
    await expect(ran).not_to_have_text(first or "", timeout=WAIT_MS)  # it moved on by itself
    await expect(ran).to_have_text(re.compile(r"^running for \d+ s$"))

    gate.touch()
    await expect(ran).to_have_text(re.compile(r"^took "), timeout=WAIT_MS)  # final: it stops
    await page.close()
    await d.stop()


async def test_find_in_the_log_highlights_the_lines_and_jumps_between_them(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    recipe = "@for i in 1 2 3 4 5 6; do echo step $$i; done\n@echo NEEDLE one\n@echo needle two"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    d = await daemon(make_settings(ui={"public": True}))
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/builds/{answer['builds'][0]}")
    await page.fill("#find-text", "needle")

    hits = page.locator("#log .hit")
    await expect(hits).to_have_count(2, timeout=WAIT_MS)  # any case
    await expect(page.locator("#find-count")).to_have_text("1 of 2")
    await expect(page.locator("#log .current")).to_contain_text("NEEDLE one")
    await page.press("#find-text", "Enter")
    await expect(page.locator("#find-count")).to_have_text("2 of 2")
    await expect(page.locator("#log .current")).to_contain_text("needle two")
    await page.click("#find-next")  # past the last: back to the first
    await expect(page.locator("#log .current")).to_contain_text("NEEDLE one")
    await page.fill("#find-text", "haystack")
    await expect(page.locator("#find-count")).to_have_text("no match")
    await expect(hits).to_have_count(0)
    await page.close()
    await d.stop()


async def test_a_failed_builds_page_explains_the_exit_code_and_links_the_failures_first_line(
    browser: Browser,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    recipe = "@for i in 1 2 3 4 5 6 7 8 9; do echo ok $$i; done\n@echo broken >&2; exit 7"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    d = await daemon(make_settings(ui={"public": True}))
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    page = await browser.new_page(viewport=DESKTOP)
    await page.goto(f"{base_url(d)}/builds/{answer['builds'][0]}")
    exit_code = page.locator("#exit-code")
    await expect(exit_code).to_contain_text("make exited with 2: its own code")
    await expect(page.locator("#ran")).to_contain_text("from start to end, checkout included")
    await page.click("#failure-link")
    target = page.locator("#log .l:target")
    await expect(target).to_have_count(1, timeout=WAIT_MS)
    await expect(target).to_contain_text("make: *** [Makefile:")
    await expect(target).to_contain_text("Error 7")  # the command's own code, on that line
    await screenshot(page, "build-failed")
    await page.close()
    await d.stop()
