"""A build's first process is started while the checkout runs, held until the daemon lets it
go (`runner.executor.process.hold_start`). If the daemon dies before that, it must never run:
the checkout may be half done, the build superseded, or the job a deploy."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.executor.cgroups import BuildCgroup, find_cgroup_tree
from runner.executor.process import hold_start
from tests.conftest import PUBLIC_URL
from tests.test_containment import require_cgroup_limits

ROOT = Path(__file__).parent.parent

DAEMON = """
import asyncio, os, sys
from pathlib import Path
from runner.executor.process import hold_start

class Placed:  # the cgroup is beside the point here: the gate is
    def place(self, pid: int) -> None:
        pass

    def self_placement_files(self) -> None:
        return None

async def main() -> None:
    ran = sys.argv[1]
    held = await hold_start(
        Placed(), ["touch", ran], workspace=Path(ran).parent, env={"PATH": os.defpath}
    )
    print(held.process.pid, held._gate, flush=True)
    if sys.argv[2] == "release":
        await held.release().wait()
        print("done", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def held_by_a_daemon(tmp_path: Path, then: str) -> tuple[subprocess.Popen[str], int, int]:
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(tmp_path / "ran"), then],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert daemon.stdout is not None
    held_pid, gate = (int(word) for word in daemon.stdout.readline().split())
    return daemon, held_pid, gate


def flock_write_locks() -> set[int]:
    """The inodes with an exclusive flock(2) lock, from /proc/locks."""
    inodes = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "FLOCK" and fields[3] == "WRITE":
            inodes.add(int(fields[5].split(":")[2]))
    return inodes


def test_a_held_start_runs_its_command_once_released(tmp_path: Path) -> None:
    daemon, _, _ = held_by_a_daemon(tmp_path, "release")
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().strip() == "done"
        assert (tmp_path / "ran").exists()
    finally:
        daemon.kill()
        daemon.wait()


def test_a_daemon_that_dies_before_the_release_never_lets_the_command_run(
    tmp_path: Path,
) -> None:
    daemon, held_pid, gate = held_by_a_daemon(tmp_path, "hold")
    gate_inode = os.stat(f"/proc/{daemon.pid}/fd/{gate}").st_ino
    try:
        daemon.kill()
        daemon.wait()
        # The held process keeps the gate open, so its lock outlives the daemon: flock waits
        # on, and what it would run never starts.
        assert gate_inode in flock_write_locks()
        os.kill(held_pid, 0)  # still there, still waiting
        assert not (tmp_path / "ran").exists()
    finally:
        os.kill(held_pid, signal.SIGKILL)


def cgroups_in(text: str) -> dict[str, str]:
    """Controller → cgroup, from what /proc/PID/cgroup says ("" for the unified hierarchy)."""
    found = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


@pytest.fixture
def build_cgroup() -> Iterator[BuildCgroup]:
    require_cgroup_limits()
    tree, _ = find_cgroup_tree(PUBLIC_URL)
    assert tree is not None
    cgroup = tree.create("build-990001-1", memory_max=None, tasks_max=None)
    yield cgroup
    cgroup.kill_all()
    cgroup.remove()


async def test_the_first_process_is_in_the_build_cgroup_before_it_is_let_go(
    tmp_path: Path, build_cgroup: BuildCgroup
) -> None:
    """With cgroup v1 it moves itself (`runner.executor.placement`), else the daemon moves it:
    either way it is in the cgroup, in every hierarchy, before the command may start."""
    report = tmp_path / "cgroup"
    command = ["sh", "-c", f"cat /proc/self/cgroup > {report}"]
    held = await hold_start(build_cgroup, command, workspace=tmp_path, env={"PATH": os.defpath})
    assert held.process.pid in build_cgroup.pids()
    assert not report.exists()  # held: nothing of the command ran yet

    await held.release().wait()

    placed = cgroups_in(report.read_text())
    daemons = cgroups_in(Path("/proc/self/cgroup").read_text())
    for controller in build_cgroup_controllers(build_cgroup):
        assert placed[controller].endswith("/build-990001-1"), (controller, placed)
        assert placed[controller] != daemons[controller]


def build_cgroup_controllers(cgroup: BuildCgroup) -> list[str]:
    paths = getattr(cgroup, "paths", None)
    return list(paths) if isinstance(paths, dict) else [""]


async def test_a_first_process_that_cannot_enter_its_cgroup_runs_nothing(
    tmp_path: Path, build_cgroup: BuildCgroup
) -> None:
    if build_cgroup.self_placement_files() is None:
        pytest.skip("the daemon moves the first process itself here (cgroup v2)")
    missing = tmp_path / "gone" / "tasks"
    build_cgroup.self_placement_files = lambda: [missing]  # type: ignore[method-assign]
    ran = tmp_path / "ran"

    with pytest.raises(OSError, match=r"could not enter its cgroup: cannot open .*gone/tasks"):
        await hold_start(build_cgroup, ["touch", str(ran)], workspace=tmp_path, env={})

    assert not ran.exists()
    assert build_cgroup.pids() == []


async def test_the_command_gets_the_build_environment_exactly(
    tmp_path: Path, build_cgroup: BuildCgroup
) -> None:
    """Whatever starts the command first (the Perl that moves itself, `placement`) neither
    adds to the environment nor reads it: a build's PERL5OPT is the build's own."""
    seen = tmp_path / "environ"
    env = {"PATH": os.defpath, "TOKEN": "a=b c\tdé", "EMPTY": "", "PERL5OPT": "-MNoSuchModule"}
    command = ["cp", "/proc/self/environ", str(seen)]
    held = await hold_start(build_cgroup, command, workspace=tmp_path, env=env)

    assert await held.release().wait() == 0

    pairs = seen.read_bytes().decode().split("\0")
    assert dict(pair.split("=", 1) for pair in pairs if pair) == env
