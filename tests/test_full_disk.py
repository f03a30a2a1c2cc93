"""A full disk loses nothing and says so.

The data directory is a real tmpfs of a few dozen MiB, filled to the last byte while a build
runs. The build's result must still be the one make gave (recorded once space is back, never
re-run), intake must answer 503 (never 500) while it cannot store, `/health` must send a proxy
away, no build may start below `storage.min_free`, and the deliveries refused meanwhile must be
asked for again once the store writes.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.app import FREE_SPACE
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.api_world import eventually
from tests.support.fake_github import FakeGitHub, HookDelivery
from tests.support.gitrepo import Remote, makefile
from tests.support.logcapture import daemon_log
from tests.support.privileges import require_root
from tests.support.webhooks import headers, push_payload
from tests.test_core_loop import PASSING, wait_for_file

DISK_MIB = 48
MIN_FREE = 8 * 1024 * 1024
# Bounded: a full store refuses within the WAL's growth room (a few MiB), far below this.
MAX_FILLER_DELIVERIES = 5000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK_MIB` MiB where the daemon's data directory will be."""
    require_root("mounts a tmpfs for the data directory")
    mount_point = tmp_path / "var"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0755", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`; returns the file to delete to give them back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    file.write(b"\0" * size)
    assert os.statvfs(disk).f_bavail == 0
    return filler


@contextlib.contextmanager
def give_back(filler: Path) -> Iterator[None]:
    """The space is given back however the test ends, so the daemon can stop cleanly."""
    try:
        yield
    finally:
        filler.unlink(missing_ok=True)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


async def test_a_full_disk_loses_nothing_and_says_so(
    small_disk: Path,
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    ran, finished, release = tmp_path / "ran", tmp_path / "finished", tmp_path / "release"
    recipe = f"@echo run >> {ran}\n{wait_for_file(release)}\n@touch {finished}\n@echo passed"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    refused_sha = remote.commit({"Makefile": PASSING}, branch="refused")
    settings = dataclasses.replace(make_settings(), min_free=MIN_FREE)
    assert settings.data_dir == small_disk
    d = await daemon(settings)
    assert d.client is not None
    sent: list[HookDelivery] = []

    async def deliver(payload: dict[str, Any], guid: str) -> int:
        body = json.dumps(payload).encode()
        status, _ = await d.post_raw(body, headers(body, SECRET, "push", guid))
        sent.insert(0, HookDelivery(len(sent) + 1, guid, "push", status, now_iso(), body))
        return status

    async def redeliver(delivery: HookDelivery) -> int:
        status, _ = await d.post_raw(
            delivery.body, headers(delivery.body, SECRET, delivery.event, delivery.guid)
        )
        return status

    fake_github.redeliver = redeliver
    assert await deliver(push_payload("octo/app", sha, branch="feature"), "guid-build") == 202
    await fake_github.wait_running(sha)
    # "Running" is posted before the checkout; the disk fills only once make runs (a slow
    # fetch would otherwise hit the full disk, and the build end `error` before make).
    assert await eventually(ran.exists)

    filler = fill(small_disk)
    with daemon_log() as log, give_back(filler):
        # Deliveries the daemon does not act on are still stored: they fill what room the
        # store had left, until it refuses.
        answers = []
        for n in range(MAX_FILLER_DELIVERIES):
            answers.append(await deliver(push_payload("octo/unknown", sha), f"guid-filler-{n}"))
            if answers[-1] != 202:
                break
        assert answers[-1] == 503 and set(answers) <= {202, 503}
        health = await d.client.get("/health")
        assert health.status == 503
        assert (await health.json())["status"] == "store unavailable"
        assert await deliver(push_payload("octo/app", refused_sha, branch="refused"), "r1") == 503

        release.touch()  # make passes while the store cannot write its result
        assert await eventually(finished.exists)
        assert await eventually(lambda: "cannot record the build's result yet" in log.getvalue())
        assert fake_github.last_state(sha) == "pending"
        page = await d.client.get("/")
        assert "Builds are paused" in await page.text()  # and why: below storage.min_free

        fake_github.deliveries = list(sent)  # GitHub's log of this hook, newest first
        filler.unlink()

        final = await fake_github.wait_final(sha, timeout=90)
        assert (final.state, final.description.split(" in ")[0]) == (
            "success",
            "make test passed",
        )
        assert (await fake_github.wait_final(refused_sha, timeout=90)).state == "success"
    assert ran.read_text() == "run\n"  # make ran once: the result was kept, not re-run
    assert [s.state for s in fake_github.for_commit(sha)].count("error") == 0
    assert (await d.build(1))["attempt"] == 1
    assert (await d.client.get("/health")).status == 200
    refused_ids = {delivery.id for delivery in sent if delivery.status_code == 503}
    assert refused_ids <= set(fake_github.redelivery_requests)
    assert "Traceback" not in log.getvalue()


async def test_no_build_starts_below_min_free_and_the_pages_say_why(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    # A floor above what this disk has free: nothing may start, and it must say so.
    settings = dataclasses.replace(make_settings(), min_free=free * 2)
    sha = remote.commit({"Makefile": PASSING}, branch="feature")
    with daemon_log() as log:
        d = await daemon(settings)
        assert d.client is not None
        assert await eventually(lambda: "not starting builds" in log.getvalue())
        _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
        build_id = answer["builds"][0]
        # GitHub hears "Queued" once it is due (it is held a moment): a scheduler that ignored
        # the floor would have started the build long before, and "Running" would replace it.
        await fake_github.wait_until(lambda: bool(fake_github.for_commit(sha)))

    assert (await d.build(build_id))["state"] == "queued"
    assert [post.description for post in fake_github.for_commit(sha)] == ["Queued"]
    text = await (await d.client.get(f"/builds/{build_id}")).text()
    assert "Builds are paused" in text and "below storage.min_free" in text
    health = await d.client.get("/health")
    assert health.status == 200  # webhooks are still taken
    assert (await health.json())["builds"].startswith("paused: ")

    d.client.app[FREE_SPACE].minimum = 0  # space is back
    assert (await fake_github.wait_final(sha)).state == "success"
    assert "Builds are paused" not in await (await d.client.get("/")).text()
