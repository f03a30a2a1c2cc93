"""The pages over HTTP, without a browser: dashboard, repository list, build page, live events,
badges. Real daemon, real builds; `[ui] public = true` here (signing in: test_pages_auth.py).
"""

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import ClientResponse

from runner.web import live, pages
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import pull_request_payload, push_payload
from tests.test_core_loop import wait_for_file

SECRET_VALUE = "hunter2-very-secret"
EXTERNAL = re.compile(r"""(?:src|href|action)=["']?(?:https?:)?//""")


async def get_text(d: Daemon, path: str, status: int = 200, **headers: str) -> str:
    assert d.client is not None
    response = await d.client.get(path, headers=headers, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:500])
    return text


async def events(response: ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events as dicts: event, id, data (parsed JSON)."""
    event: dict[str, Any] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(": ")
            event[name] = orjson.loads(value) if name == "data" else value


async def push(
    d: Daemon, remote: Remote, recipe: str, branch: str = "main", **kw: Any
) -> tuple[str, int]:
    sha = remote.commit({"Makefile": makefile(test=recipe, deploy="@true")}, branch=branch, **kw)
    status, answer = await d.deliver("push", push_payload("octo/app", sha, branch=branch, **kw))
    assert status == 202, answer
    return sha, answer["builds"][0]


# -- the build page --------------------------------------------------------------------------


async def test_build_page_header_log_anchors_colours_and_no_external_assets(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    recipe = "@printf 'plain\\n\\033[1;31mred and bold\\033[0m\\n<script>alert(1)</script>\\n'"
    sha, build_id = await push(d, remote, recipe, message="Colour the output\n\nWith a body")
    await fake_github.wait_final(sha)

    assert d.client is not None
    response = await d.client.get(f"/builds/{build_id}")
    page = await response.text()

    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "octo/app" in page and "make test" in page and "data-build-state>success" in page
    assert f"· on {d.settings.server.node}</dd>" in page  # which node ran it
    assert f'<code title="{sha}">{sha[:7]}</code>' in page
    assert '<span id="commit-title">Colour the output</span>' in page and "With a body" in page
    assert "— Codertocat</span>" in page  # the author, from GitHub's example push
    for label in ("Queued", "Started", "Finished", "waited", "took"):
        assert label in page
    assert '<div class="l" id="L3"><a class="n" href="#L3" data-n="3"></a>' in page
    assert '<span class="f1 bo">red and bold</span>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'href="/api/builds/' in page  # the raw log
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "build.js" not in page  # a finished build needs no script
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
        assert (await d.client.get(asset)).status == 200, asset


async def test_secrets_never_reach_a_page(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    project = {"repository": "octo/app", "secrets": {"API_KEY": SECRET_VALUE}}
    d = await daemon(make_settings([project]))
    branch = f"leak-{SECRET_VALUE}"
    sha, build_id = await push(
        d, remote, "@echo key=$$API_KEY", branch=branch, message=f"Committed {SECRET_VALUE}"
    )
    await fake_github.wait_final(sha)

    shown = [
        await get_text(d, f"/builds/{build_id}"),
        await get_text(d, "/"),
        await get_text(d, "/octo/app"),
        await get_text(d, f"/octo/app?branch={branch}"),
        await get_text(d, f"/api/builds/{build_id}"),
        await get_text(d, f"/octo/app/badge.svg?branch={branch}"),
    ]
    for text in shown:
        assert SECRET_VALUE not in text
    assert "key=***" in shown[0] and "Committed ***" in shown[0] and "leak-***" in shown[0]


async def test_a_capped_log_shows_its_cut_marker(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings(builds={"max_log_bytes": 4096}))
    sha, build_id = await push(d, remote, "@seq 1 5000")
    await fake_github.wait_final(sha)

    page = await get_text(d, f"/builds/{build_id}")

    marker = re.search(r'<div class="l note" id="L(\d+)">.*?bytes of output cut here', page)
    assert marker is not None
    assert ">5000</span>" in page  # the tail is kept


# -- live events -----------------------------------------------------------------------------


async def test_live_events_stream_new_lines_then_the_final_state(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    d = await daemon(make_settings())
    sha, build_id = await push(d, remote, f"@echo before\n{wait_for_file(go)}\n@echo after")
    await fake_github.wait_running(sha)
    page = await get_text(d, f"/builds/{build_id}")
    events_url = re.search(r'data-events="([^"]+)"', page)
    assert events_url is not None and "build.js" in page
    assert '<noscript><meta http-equiv="refresh"' in page  # without JavaScript

    assert d.client is not None
    seen: list[dict[str, Any]] = []
    async with d.client.get(events_url[1].replace("&amp;", "&")) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"].startswith("no-cache")
        async for event in events(response):
            seen.append(event)
            if event["event"] == "state" and not go.exists():
                go.touch()  # the page is watching: let the build go on
    names = [event["event"] for event in seen]
    assert names[0] == "state" and names[-1] == "end"
    assert seen[-1]["data"]["state"] == "success" and seen[-1]["data"]["is_final"]
    streamed = "".join(event["data"]["html"] for event in seen if event["event"] == "lines")
    assert "after" in streamed and "before" not in streamed  # the page had that already
    ids = [event["id"] for event in seen if event["event"] == "lines"]
    log_size = len((await d.log(build_id)).encode())
    assert int(ids[-1].split(".")[0]) == log_size


async def test_a_reconnect_resumes_after_the_last_event_id(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha, build_id = await push(d, remote, "@echo one\n@echo two\n@echo three")
    await fake_github.wait_final(sha)
    log = (await d.log(build_id)).encode()
    offset = log.index(b"two\n")
    line = log[:offset].count(b"\n") + 1

    assert d.client is not None
    url = f"/builds/{build_id}/events"
    async with d.client.get(url, headers={"Last-Event-ID": f"{offset}.{line}"}) as response:
        seen = [event async for event in events(response)]

    lines = "".join(event["data"]["html"] for event in seen if event["event"] == "lines")
    assert f'id="L{line}"' in lines and ">two<" in lines and ">three<" in lines
    assert ">one<" not in lines
    assert seen[-1]["event"] == "end"

    async with d.client.get(url, headers={"Last-Event-ID": f"{len(log) + 10}.99"}) as response:
        names = [event["event"] async for event in events(response)]
    assert names[0] == "reset" and names[-1] == "end"  # the log is shorter: start over


async def test_live_streams_are_bounded_and_end_at_shutdown(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "MAX_STREAMS", 1)
    go = tmp_path / "go"
    d = await daemon(make_settings())
    sha, build_id = await push(d, remote, wait_for_file(go))
    await fake_github.wait_running(sha)
    assert d.client is not None

    # A browser of its own: closing the test client must not be what ends this stream.
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(d.client.make_url(f"/builds/{build_id}/events")) as first,
    ):
        assert first.status == 200
        second = await d.client.get(f"/builds/{build_id}/events")
        assert second.status == 503 and second.headers["Retry-After"]
        stream = events(first)
        assert (await anext(stream))["event"] == "state"
        # Shutdown ends the stream, cleanly, though the build still runs (it waits for `go`):
        # without that, this read would never end, or end only when the connection is cut.
        stopping = asyncio.create_task(d.stop())
        remaining = [event["event"] async for event in stream]
        assert "end" not in remaining
        go.touch()  # now the draining daemon's build may finish
        await stopping


# -- lists -----------------------------------------------------------------------------------


async def test_dashboard_shows_what_runs_and_every_repositorys_branches(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    projects = [{"repository": "octo/app"}, {"repository": "octo/quiet"}]
    d = await daemon(make_settings(projects))
    main_sha, main_id = await push(d, remote, "@echo ok", branch="main")
    await fake_github.wait_final(main_sha, "hobotnica/deploy")
    slow_sha, slow_id = await push(d, remote, wait_for_file(go), branch="slow")
    await fake_github.wait_running(slow_sha)

    running = await get_text(d, "/")
    go.touch()
    await fake_github.wait_final(slow_sha)
    done = await get_text(d, "/")

    active = running.split("<h2>Repositories</h2>")[0]
    assert f'href="/builds/{slow_id}"' in active and "running" in active
    assert 'http-equiv="refresh"' in running  # it refreshes while something runs
    assert "Nothing is running or queued" in done and 'http-equiv="refresh"' not in done
    app_card = done.split('aria-label="octo/app"')[1].split("</section>")[0]
    assert "main" in app_card and "slow" in app_card
    assert f'href="/builds/{main_id}"' in app_card and f'href="/builds/{slow_id}"' in app_card
    assert '/octo/app/badge.svg?branch=main"' in app_card  # the default branch, from the push
    quiet_card = done.split('aria-label="octo/quiet"')[1].split("</section>")[0]
    assert "No builds yet" in quiet_card


async def test_repository_page_filters_pages_and_checks_its_input(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    d = await daemon(make_settings())
    ids = {}
    for branch, recipe in (("feature", "@true"), ("red", "@false"), ("feature", "@true")):
        sha, ids[sha] = await push(d, remote, recipe, branch=branch)
        await fake_github.wait_final(sha)
    first, red, newest = ids.values()

    def shown(page: str) -> list[int]:
        return [int(n) for n in re.findall(r'<a href="/builds/(\d+)">#', page)]

    newest_page = await get_text(d, "/octo/app")
    assert shown(newest_page) == [newest, red]
    older = re.search(r'href="(/octo/app\?before=\d+)">Older', newest_page)
    assert older is not None
    assert shown(await get_text(d, older[1])) == [first]
    assert shown(await get_text(d, "/octo/app?branch=feature")) == [newest, first]
    assert shown(await get_text(d, "/octo/app?state=failure")) == [red]
    assert shown(await get_text(d, "/octo/app?branch=red&state=success")) == []

    await get_text(d, "/octo/app?branch=..%2Fetc", 400)
    await get_text(d, "/octo/app?state=pending", 400)
    await get_text(d, "/octo/app?before=x", 400)
    await get_text(d, "/octo/nothing", 404)
    await get_text(d, "/api/whatever", 404)  # not a repository page: the API's space
    assert d.client is not None
    moved = await d.client.get("/Octo/App?state=failure", allow_redirects=False)
    assert (moved.status, moved.headers["Location"]) == (301, "/octo/app?state=failure")


# -- badges ----------------------------------------------------------------------------------


async def test_badges_follow_the_newest_test_build_of_a_branch(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    d = await daemon(make_settings())
    assert d.client is not None

    unknown = await d.client.get("/octo/app/badge.svg")
    assert unknown.status == 200 and ">unknown</text>" in await unknown.text()
    assert unknown.headers["Content-Type"].startswith("image/svg+xml")
    assert "no-cache" in unknown.headers["Cache-Control"]

    sha, _ = await push(d, remote, "@true", branch="main")
    await fake_github.wait_final(sha, "hobotnica/deploy")
    sha, _ = await push(d, remote, "@false", branch="red")
    await fake_github.wait_final(sha)
    assert ">passing</text>" in await get_text(d, "/octo/app/badge.svg")  # main, by inference
    assert ">passing</text>" in await get_text(d, "/octo/app/badge.svg?branch=main")
    assert ">failing</text>" in await get_text(d, "/octo/app/badge.svg?branch=red")
    assert ">unknown</text>" in await get_text(d, "/octo/app/badge.svg?branch=other")

    sha, _ = await push(d, remote, wait_for_file(go), branch="red")
    await fake_github.wait_running(sha)
    assert ">running</text>" in await get_text(d, "/octo/app/badge.svg?branch=red")
    go.touch()
    await fake_github.wait_final(sha)
    assert ">passing</text>" in await get_text(d, "/octo/app/badge.svg?branch=red")

    await get_text(d, "/octo/app/badge.svg?branch=a..b", 400)
    assert ">unknown</text>" in await get_text(d, "/octo/nothing/badge.svg", 404)


async def test_a_pull_request_is_shown_as_one(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    remote.commit({"Makefile": makefile(test="@true")}, branch="main")
    sha = remote.commit({"Makefile": makefile(test="@true")}, branch="topic")
    remote.push_pull_ref(7, sha)
    d = await daemon(make_settings())
    _, answer = await d.deliver(
        "pull_request", pull_request_payload("octo/app", sha, number=7, branch="topic")
    )
    await fake_github.wait_final(sha)

    page = await get_text(d, f"/builds/{answer['builds'][0]}")
    assert "<dt>Pull request</dt><dd>#7 from <code>topic</code>" in page
    assert "pull request #7" in await get_text(d, "/")
