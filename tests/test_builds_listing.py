"""Every build of every repository in one list (`GET /builds`): filters and pages, on both store
backends, and the page as a user reaches it."""

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.core.models import Build, Job
from runner.store import Store
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.stores import BACKENDS, deliver, request
from tests.support.webhooks import push_payload


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with BACKENDS[request.param](tmp_path) as backend:
        yield await backend.open()


async def test_filters_combine_and_pages_go_back_by_id(store: Store) -> None:
    made = []
    for n in range(1, 13):
        wanted = request(
            n,
            repository="octo/app" if n % 2 else "octo/lib",
            branch="main" if n % 3 else "feature",
            job=Job.DEPLOY if n % 4 == 0 else Job.TEST,
        )
        (build_id,) = await deliver(
            store, f"d{n}", dataclasses.replace(wanted, author="alice" if n < 5 else "bob")
        )
        made.append(build_id)
    for build_id in made[:6]:
        await store.cancel_build(build_id, "Cancelled by alice")

    def ids(builds: list) -> list[int]:  # type: ignore[type-arg]
        return [build.id for build in builds]

    everything = await store.list_builds(None, limit=100)
    assert ids(everything) == sorted(made, reverse=True)  # newest first, all repositories
    cases = [
        {"repository": "octo/lib"},
        {"branch": "main", "author": "alice"},
        {"job": "deploy"},
        {"state": "error"},
        {"repository": "octo/app", "state": "queued", "branch": "feature"},
    ]
    for filters in cases:
        rest = {name: value for name, value in filters.items() if name != "repository"}
        found = await store.list_builds(filters.get("repository"), limit=100, **rest)
        expected = [b for b in everything if _matches(b, filters)]
        assert ids(found) == ids(expected) and found, filters
    first_page = await store.list_builds(None, limit=5)
    second_page = await store.list_builds(None, before=first_page[-1].id, limit=5)
    assert ids(first_page) + ids(second_page) == ids(everything)[:10]


def _matches(build: Build, filters: dict[str, str]) -> bool:
    values = {
        "repository": build.repository,
        "branch": build.request.branch,
        "author": build.request.author,
        "job": build.job.value,
        "state": build.state.value,
    }
    return all(values[name] == value for name, value in filters.items())


async def test_the_builds_page_lists_every_repository_and_filters(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    remote_root: Path,
) -> None:
    lib = make_remote(remote_root, "octo/lib")
    app_sha = remote.commit({"Makefile": makefile(test="@true")}, branch="feature")
    lib_sha = lib.commit({"Makefile": makefile(test="@exit 1")}, branch="main")
    projects = [{"repository": "octo/app"}, {"repository": "octo/lib"}]
    d = await daemon(make_settings(projects))
    await d.deliver("push", push_payload("octo/app", app_sha, branch="feature"))
    await d.deliver("push", push_payload("octo/lib", lib_sha, branch="main"))
    await fake_github.wait_final(app_sha)
    await fake_github.wait_final(lib_sha)
    assert d.client is not None

    everything = await (await d.client.get("/builds")).text()
    failed = await (await d.client.get("/builds?state=failure")).text()
    of_app = await (await d.client.get("/builds?repository=octo/app&branch=feature")).text()
    bad = await d.client.get("/builds?state=purple")

    assert 'href="/octo/app"' in everything and 'href="/octo/lib"' in everything
    assert 'href="/octo/lib"' in failed and 'href="/octo/app"' not in failed.split("<table")[1]
    assert 'href="/builds/1"' in of_app and 'href="/builds/2"' not in of_app
    assert bad.status == 400
    await d.stop()


async def test_the_cancelling_banner_says_cancelled_once_the_build_has_stopped(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@true")}, branch="feature")
    d = await daemon(make_settings())
    await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)
    assert d.client is not None

    page = await (await d.client.get("/builds/1?notice=cancelling")).text()

    assert "Cancelled." in page and "being stopped" not in page
