"""What a node finds on its host at start: processes of builds it lost while it was down.

A node SIGKILLed while building leaves its build's processes behind; another node takes the
build over and runs it again (attempt 2). When the first node starts again, recovery names
nothing of its own (the build is no longer its), so the start sweeps the host: every process of
this installation whose build attempt no live daemon runs is ended, and only those.
"""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.core.links import build_url
from runner.executor.host import BuildHost
from tests.conftest import SettingsFactory
from tests.support.stores import LEASE, OWNER, deliver, everyone_gone, request, sqlite_backend

OTHER_NODE = "build-host/4242/abcd/node-b"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def build_process(public_url: str, build_id: int, attempt: int) -> subprocess.Popen[bytes]:
    """A process as a build leaves it: carrying its marker, detached from any group."""
    environment = {
        "PATH": os.environ["PATH"],
        "HOBOTNICA_BUILD_URL": build_url(public_url, build_id),
        "HOBOTNICA_ATTEMPT": str(attempt),
    }
    return subprocess.Popen(["sleep", "300"], env=environment, start_new_session=True)


async def test_a_starting_node_ends_the_processes_of_a_build_another_node_took_over(
    make_settings: SettingsFactory, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    settings = make_settings()
    public_url = settings.server.public_url
    async with sqlite_backend(tmp_path / "store") as backend:
        store = await backend.open()
        [lost_id] = await deliver(store, "d1", request(1))
        [running_id] = await deliver(store, "d2", request(2, repository="octo/other"))
        await store.claim_builds(2, OWNER, LEASE)  # this node ran both, then died
        await store.recover_interrupted(everyone_gone)  # the other node saw it gone
        taken_over = await store.claim_builds(2, OTHER_NODE, LEASE)
        assert {(build.id, build.attempt) for build in taken_over} == {
            (lost_id, 2),
            (running_id, 2),
        }
        lost = build_process(public_url, lost_id, 1)  # left by the dead node
        runs_elsewhere = build_process(public_url, running_id, 2)  # the other node's, on this host
        another_installation = build_process("http://127.0.0.1:1", lost_id, 1)
        processes += [lost, runs_elsewhere, another_installation]

        host = await BuildHost.prepare(settings)
        try:
            await host.end_orphans(store, is_gone=lambda owner: owner != OTHER_NODE)
        finally:
            await host.release()

        assert lost.wait(timeout=30) == -signal.SIGTERM
        assert runs_elsewhere.poll() is None
        assert another_installation.poll() is None


async def test_a_starting_node_leaves_a_live_daemons_builds_alone(
    make_settings: SettingsFactory, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # Blue/green on one host: the old instance still runs its build while the new one starts.
    settings = make_settings()
    async with sqlite_backend(tmp_path / "store") as backend:
        store = await backend.open()
        [build_id] = await deliver(store, "d1", request(1))
        await store.claim_builds(1, OTHER_NODE, LEASE)
        running = build_process(settings.server.public_url, build_id, 1)
        processes.append(running)

        host = await BuildHost.prepare(settings)
        try:
            await host.end_orphans(store, is_gone=lambda owner: owner != OTHER_NODE)
            assert running.poll() is None
            # Once that daemon is gone, the same sweep ends it.
            await host.end_orphans(store, is_gone=lambda owner: True)
        finally:
            await host.release()
        assert running.wait(timeout=30) == -signal.SIGTERM
