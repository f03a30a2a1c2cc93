"""A build's first process is started while the checkout runs, held until the daemon lets it
go (`runner.executor.process.hold_start`). If the daemon dies before that, it must never run:
the checkout may be half done, the build superseded, or the job a deploy."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent

DAEMON = """
import asyncio, os, sys
from pathlib import Path
from runner.executor.process import hold_start

class Placed:  # the cgroup is beside the point here: the gate is
    def place(self, pid: int) -> None:
        pass

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
