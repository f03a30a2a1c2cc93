"""Blue/green: two real `hobotnica serve` processes on two ports sharing one data dir (one SQLite).

Pushes arrive alternately at both, as they would through nginx during an upgrade. Each build runs
exactly once, on one of them; statuses go out once, serially; and when one instance is told to
stop (SIGTERM) the webhooks it still accepts while draining are built by the other.
"""

import asyncio
import random
import signal
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.daemon_process import (
    FINAL_STATES,
    DaemonProcess,
    TimedGitHub,
    processes_with_marker_prefix,
    serve_fake_github,
)
from tests.support.gitrepo import Remote, make_remote, makefile

REPOSITORIES = ("octo/one", "octo/two", "octo/three", "octo/four")
HOLD = "octo/hold"
PUSHES = 40
DRAIN_AT = 24  # the push before which the first instance gets SIGTERM
PUSH_INTERVAL = 0.1
SETTLE_TIMEOUT = 120.0


def settled(builds: list[dict[str, Any]], fake: TimedGitHub) -> bool:
    if any(b["state"] not in FINAL_STATES for b in builds):
        return False
    posted = {(s.target_url, s.state) for s in fake.statuses}
    if any((b["url"], b["state"]) not in posted for b in builds):
        return False
    return all(fake.last_state(b["sha"]) in FINAL_STATES for b in builds)


async def test_two_instances_share_one_store_and_build_each_push_once(tmp_path: Path) -> None:
    rng = random.Random(4242)
    ran = tmp_path / "ran.txt"
    release = tmp_path / "release"
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    remote: dict[str, Remote] = {name: make_remote(remotes, name) for name in REPOSITORIES}
    record = f'@echo "$$HOBOTNICA_BUILD_ID $$HOBOTNICA_SHA" >> {ran}'
    commits = []
    for index in range(PUSHES):
        repository = REPOSITORIES[index % len(REPOSITORIES)]
        branch = f"feature-{index}"
        pause = rng.choice(["0", "0.05", "0.1", "0.2"])
        sha = remote[repository].commit(
            {"Makefile": makefile(test=f"{record}\n@sleep {pause}"), "n.txt": str(index)},
            message=f"Change {index}",
            branch=branch,
        )
        commits.append((repository, sha, branch))
    hold_sha = make_remote(remotes, HOLD).commit(
        {"Makefile": makefile(test=f"{record}\n@while [ ! -e {release} ]; do sleep 0.02; done")},
        message="Hold the first instance in its drain",
        branch="hold",
    )

    data_dir = tmp_path / "var"  # ONE data dir, one database, for both
    public_url = f"http://hobotnica-{uuid.uuid4().hex[:8]}.test"  # the proxy in front of both
    projects = [{"repository": name} for name in (*REPOSITORIES, HOLD)]
    async with serve_fake_github() as fake:
        blue, green = (
            DaemonProcess(
                name,
                tmp_path,
                fake=fake,
                git_url=remotes.as_uri(),
                data_dir=data_dir,
                projects=projects,
                public_url=public_url,
            )
            for name in ("blue", "green")
        )
        try:
            # Blue alone takes a build that only ends when the test says so: it will still be
            # running when blue is told to stop, so blue drains while pushes keep arriving.
            await blue.start()
            status, answer = await blue.push(HOLD, hold_sha, branch="hold")
            assert status == 202
            (hold_id,) = answer["builds"]
            async with asyncio.timeout(30):
                while (await blue.build(hold_id) or {}).get("state") != "running":
                    await asyncio.sleep(0.02)
            await green.start()

            build_of: dict[int, tuple[str, str]] = {hold_id: (HOLD, hold_sha)}
            accepted_while_draining: list[int] = []
            for index, (repository, sha, branch) in enumerate(commits):
                if index == DRAIN_AT:
                    blue.signal(signal.SIGTERM)
                    async with asyncio.timeout(10):
                        while await blue.health() != 503:
                            await asyncio.sleep(0.02)
                daemon = blue if index % 2 == 0 else green
                status, answer = await daemon.push(repository, sha, branch=branch)
                assert status == 202, (daemon.name, index, answer)
                assert len(answer["builds"]) == 1, answer
                build_of[answer["builds"][0]] = (repository, sha)
                if daemon is blue and index >= DRAIN_AT:
                    accepted_while_draining.append(answer["builds"][0])
                await asyncio.sleep(PUSH_INTERVAL)

            assert blue.running() and await blue.health() == 503, "blue is still draining"
            assert accepted_while_draining
            release.touch()
            assert await blue.wait_exit(60) == 0, blue.log_tail()

            deadline = time.monotonic() + SETTLE_TIMEOUT
            builds = await green.all_builds()
            while not settled(builds, fake) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                builds = await green.all_builds()
            green.signal(signal.SIGTERM)
            assert await green.wait_exit(60) == 0, green.log_tail()
            leftovers = processes_with_marker_prefix(public_url)
        finally:
            await blue.close()
            await green.close()

    # Every push made one build, it ran once (on one instance) and succeeded.
    assert len(build_of) == PUSHES + 1
    assert {b["id"] for b in builds} == set(build_of), "no build beyond the pushes' own"
    for build in builds:
        assert (build["repository"], build["sha"]) == build_of[build["id"]]
        assert (build["state"], build["attempt"]) == ("success", 1), (
            build["id"],
            build["description"],
        )
    runs = Counter(ran.read_text().splitlines())
    expected = {f"{build_id} {sha}" for build_id, (_repository, sha) in build_of.items()}
    assert set(runs) == expected
    assert set(runs.values()) == {1}, [line for line, n in runs.items() if n > 1]

    # Both instances built; none built what the other did; blue's drain left its late pushes
    # to green.
    by_blue, by_green = blue.finished_build_ids(), green.finished_build_ids()
    assert by_blue and by_green
    assert not set(by_blue) & set(by_green)
    assert sorted(by_blue + by_green) == sorted(build_of)
    assert hold_id in by_blue
    assert set(accepted_while_draining) <= set(by_green)

    # Statuses: sent once each (the outbox is leased to one instance at a time), and every
    # commit's last word is its build's final state.
    sent = Counter((s.sha, s.context, s.state, s.description, s.target_url) for s in fake.statuses)
    assert not [post for post, n in sent.items() if n > 1]
    for build in builds:
        assert fake.last_state(build["sha"]) == "success", fake.for_commit(build["sha"])

    db = sqlite3.connect(data_dir / "hobotnica.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    assert not leftovers
