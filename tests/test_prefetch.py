"""A pushed commit is fetched into the mirror when the push is accepted, not when its build
starts: a build that waits in the queue finds its commit there already."""

import asyncio
import subprocess
import time
from pathlib import Path

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import GIT_ENV, Remote, makefile, wait_for_file
from tests.support.webhooks import push_payload

BOUND = 30.0


def mirror_has(mirror: Path, sha: str) -> bool:
    found = subprocess.run(
        ["git", f"--git-dir={mirror}", "cat-file", "-e", f"{sha}^{{commit}}"],
        env=GIT_ENV,
        capture_output=True,
    )
    return found.returncode == 0


async def test_a_queued_push_has_its_commit_fetched_before_its_build_starts(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    blocker = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="blocker")
    settings = make_settings()
    d = await daemon(settings)
    await d.deliver("push", push_payload("octo/app", blocker, branch="blocker"))
    await fake_github.wait_running(blocker)  # the repository's next build waits behind it
    mirror = settings.data_dir / "mirrors" / "octo" / "app.git"
    pushed = remote.commit({"Makefile": makefile(test="@echo built")}, branch="feature")
    assert not mirror_has(mirror, pushed)  # made after the blocker's fetch

    _, answer = await d.deliver("push", push_payload("octo/app", pushed, branch="feature"))

    deadline = time.monotonic() + BOUND
    while not mirror_has(mirror, pushed):
        assert time.monotonic() < deadline, "the pushed commit was never fetched"
        await asyncio.sleep(0.02)
    queued = await d.build(answer["builds"][0])
    assert (queued["state"], queued["started_at"]) == ("queued", None)
    release.touch()
    assert (await fake_github.wait_final(pushed)).state == "success"
