"""End a build's whole process tree: SIGTERM, a grace period, then SIGKILL.

Three nets catch the tree. The build's cgroup, where the host gives one (`runner.executor.cgroups`),
holds everything the build started, whatever it did to its session, group or environment. The
process group (make runs in a session of its own) catches the ordinary children. The marker
catches those that left the group with `setsid` or a double fork:
every process a build starts inherits `HOBOTNICA_BUILD_URL`, which holds this installation's
public URL and the build id, so it is unique on the host (two installations never end each
other's builds). Reading `/proc/*/environ` for it is the approach of Jenkins' process-tree killer.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from runner.executor.cgroups import BuildCgroup

POLL_INTERVAL = 0.05
KILL_WAIT = 5.0

log = structlog.get_logger(logger_name="hobotnica.reaper")


@dataclass(frozen=True)
class Leftover:
    pid: int
    command: str


Marker = tuple[bytes, ...]


def marker_for(build_url: str, attempt: int) -> Marker:
    """The environment entries that mark one attempt of one build.

    The attempt matters with two daemons: ending what a lost attempt left behind must not end
    the next attempt, which the other daemon may already be running.
    """
    return (f"HOBOTNICA_BUILD_URL={build_url}".encode(), f"HOBOTNICA_ATTEMPT={attempt}".encode())


def _other_processes() -> Iterator[Path]:
    """/proc/PID of every process on the host but this daemon."""
    own = str(os.getpid())
    return (
        entry for entry in Path("/proc").iterdir() if entry.name.isdigit() and entry.name != own
    )


def _environment(entry: Path) -> list[bytes]:
    return (entry / "environ").read_bytes().split(b"\0")


def marked_attempts(build_url_prefix: str) -> set[tuple[str, int]]:
    """(build URL, attempt) of every live process on the host whose marker starts with
    `build_url_prefix`: what this installation's builds are running here now."""
    wanted = f"HOBOTNICA_BUILD_URL={build_url_prefix}".encode()
    found = set()
    for entry in _other_processes():
        try:
            environ = _environment(entry)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        url = next((item for item in environ if item.startswith(wanted)), None)
        attempt = next((item for item in environ if item.startswith(b"HOBOTNICA_ATTEMPT=")), None)
        if url is not None and attempt is not None and attempt[18:].isdigit():
            found.add((url.split(b"=", 1)[1].decode(errors="replace"), int(attempt[18:])))
    return found


def find_tree(process_group: int | None, marker: Marker) -> list[Leftover]:
    """Live processes in the group or carrying the marker (zombies are already dead)."""
    found = []
    for entry in _other_processes():
        try:
            stat = (entry / "stat").read_text()
            # The command may contain spaces and parentheses; fields resume after the last ")".
            state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if state == "Z":
                continue
            in_group = process_group is not None and int(pgrp) == process_group
            if in_group or set(marker) <= set(_environment(entry)):
                found.append(Leftover(int(entry.name), stat.split("(", 1)[1].rsplit(")", 1)[0]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


async def end_tree(
    process_group: int | None, marker: Marker, grace: float, cgroup: BuildCgroup | None = None
) -> list[Leftover]:
    """End every process of the tree; returns those that were still alive when asked to stop.

    With a cgroup, whatever is in it belongs to the tree too, however it left the group and
    dropped the marker, and the last word is the cgroup's own kill.
    """

    def find() -> list[Leftover]:
        found = find_tree(process_group, marker)
        if cgroup is not None:
            known = {process.pid for process in found}
            found += [_leftover(pid) for pid in cgroup.pids() if pid not in known]
        return found

    alive = await asyncio.to_thread(find)
    if not alive:
        return []
    _signal_all(alive, process_group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = alive
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL)
        remaining = await asyncio.to_thread(find)
    kill_deadline = time.monotonic() + KILL_WAIT
    while remaining and time.monotonic() < kill_deadline:
        if cgroup is not None:
            await asyncio.to_thread(cgroup.kill_all)
        _signal_all(remaining, process_group, signal.SIGKILL)
        await asyncio.sleep(POLL_INTERVAL)
        remaining = await asyncio.to_thread(find)
    if remaining:  # not ours to kill (another user's) or stuck in the kernel
        log.error("processes of a build survived SIGKILL", processes=[p.pid for p in remaining])
    return alive


def _leftover(pid: int) -> Leftover:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return Leftover(pid, stat.split("(", 1)[1].rsplit(")", 1)[0])
    except (OSError, IndexError):
        return Leftover(pid, "?")


def _signal_all(processes: list[Leftover], process_group: int | None, signum: int) -> None:
    if process_group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process_group, signum)
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signum)
