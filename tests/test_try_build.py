"""`hobotnica try` against the real daemon on loopback: what a new user sees on the dashboard and
the badge of a repository they tried, and that it deploys only when asked to.

`try_build` is called as the command calls it (it pushes with real git, posts the signed webhook
over HTTP, and `--wait` reads the shared store), in a thread, because it is a synchronous client.
"""

import asyncio
import dataclasses
from pathlib import Path

import pytest

from runner.cli.try_build import try_build
from runner.core.settings import Settings
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.gitrepo import git, makefile
from tests.test_pages import get_text


@pytest.fixture
async def served(daemon: DaemonFactory, make_settings: SettingsFactory) -> Daemon:
    started: Daemon = await daemon(make_settings())
    return started


def project_at(path: Path, deployed: Path, branch: str = "main") -> Path:
    """A local repository whose `make deploy` leaves a mark at `deployed`."""
    path.mkdir()
    git(path, "init", "-q", "-b", branch)
    recipe = makefile(test="@echo tests pass", deploy=f"@touch {deployed}")
    (path / "Makefile").write_text(recipe)
    git(path, "add", "Makefile")
    git(path, "commit", "-q", "-m", "Add a Makefile")
    return path


async def tried(d: Daemon, path: Path, *, deploy: bool = False) -> int:
    """`hobotnica try PATH --wait [--deploy]` against `d`; its exit status."""
    assert d.client is not None and d.client.server.port is not None
    settings: Settings = dataclasses.replace(
        d.settings, server=dataclasses.replace(d.settings.server, port=d.client.server.port)
    )
    return await asyncio.to_thread(try_build, settings, path, deploy=deploy, wait=True)


def card(dashboard: str, repository: str) -> str:
    return dashboard.split(f'aria-label="{repository}"')[1].split("</section>")[0]


async def test_a_repository_tried_without_deploy_shows_its_default_branch_and_never_deploys(
    served: Daemon, tmp_path: Path
) -> None:
    deployed = tmp_path / "deployed"
    project = project_at(tmp_path / "my-project", deployed)

    assert await tried(served, project) == 0

    shown = card(await get_text(served, "/"), "local/my-project")
    assert '/local/my-project/badge.svg?branch=main"' in shown
    assert 'alt="main: success"' in shown
    assert ">passing</text>" in await get_text(served, "/local/my-project/badge.svg")
    build = await served.build(1)
    assert (build["job"], build["state"], build["branch"]) == ("test", "success", "main")
    # A deploy is queued in the transaction that ends the tests: none was, and none ran.
    assert build["deploys_after_test"] is False and build["deploy_build_ids"] == []
    assert not deployed.exists()


async def test_deploying_is_asked_for_each_time(served: Daemon, tmp_path: Path) -> None:
    deployed = tmp_path / "deployed"
    project = project_at(tmp_path / "app", deployed)

    assert await tried(served, project, deploy=True) == 0  # waits for the deploy too
    assert deployed.exists()
    first = await served.build(1)
    assert first["deploys_after_test"] is True and first["deploy_build_ids"] == [2]

    deployed.unlink()
    (project / "README").write_text("a change\n")
    git(project, "add", "README")
    git(project, "commit", "-q", "-m", "Change without deploying")
    assert await tried(served, project) == 0

    again = await served.build(3)
    assert (again["job"], again["state"], again["message"]) == (
        "test",
        "success",
        "Change without deploying",
    )
    assert again["deploys_after_test"] is False and again["deploy_build_ids"] == []
    assert not deployed.exists()
    assert ">passing</text>" in await get_text(served, "/local/app/badge.svg")


async def test_the_branch_tried_is_the_default_branch_and_its_badge_tells_its_state(
    served: Daemon, tmp_path: Path
) -> None:
    project = project_at(tmp_path / "app", tmp_path / "deployed", branch="trunk")
    assert await tried(served, project) == 0
    git(project, "checkout", "-q", "-b", "broken")
    (project / "Makefile").write_text(makefile(test="@exit 3"))
    git(project, "commit", "-q", "-am", "Break the tests")

    assert await tried(served, project) == 2  # --wait: the tests failed

    shown = card(await get_text(served, "/"), "local/app")
    assert '/local/app/badge.svg?branch=broken"' in shown
    assert ">failing</text>" in await get_text(served, "/local/app/badge.svg")
    assert ">passing</text>" in await get_text(served, "/local/app/badge.svg?branch=trunk")
