"""Run one make target as an owned process tree and stream its output, masked, into the log.

`make` starts in a new session (its own process group) with stdin from /dev/null, from an argument
list, never a shell. Whatever way the target ends — exit, timeout, a stop request (a newer push
superseded it), or cancellation of the task (daemon shutdown) — the whole tree is ended before
this returns, so a `some-daemon &` left behind never outlives its build.

With a cgroup, the tree starts inside it: the first process is util-linux's `flock`, which waits
for a lock the daemon holds on the cgroup's directory while the daemon moves it into the cgroup,
then runs the command. So not one instruction of the build runs outside its cgroup, and the
daemon keeps starting children with vfork (a child cannot be placed before it execs otherwise).
"""

import asyncio
import contextlib
import fcntl
import functools
import os
import shutil
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.masking import SecretMasker
from runner.core.spawn import Child, PipeReader, spawn
from runner.executor.cgroups import BuildCgroup
from runner.executor.logfile import BuildLog
from runner.executor.reaper import Leftover, Marker, end_tree
from runner.scheduling.stop import StopRequest

# Once the tree is ended no writer is left; this only bounds a reader stuck on a leaked pipe.
DRAIN_TIMEOUT = 5.0


@dataclass
class MakeOutcome:
    exit_code: int | None
    timed_out: bool
    stopped: str | None
    started_at: float
    duration: float
    leftovers: list[Leftover] = field(default_factory=list)


async def run_make(
    argv: Sequence[str],
    *,
    workspace: Path,
    env: Mapping[str, str],
    timeout: float,
    kill_grace: float,
    log: BuildLog,
    masker: SecretMasker,
    marker: Marker,
    stop: StopRequest,
    cgroup: BuildCgroup | None = None,
) -> MakeOutcome:
    started_at = time.time()
    started = time.monotonic()
    if cgroup is None:
        process = await spawn(argv, cwd=workspace, env=env, merge_stderr=True, new_session=True)
    else:
        process = await _spawn_in(cgroup, argv, workspace=workspace, env=env)
    pump = asyncio.create_task(_pump(process.stdout, log, masker))
    # make's own exit ends the build, not its pipe's end, which a `server &` left behind holds.
    exited = asyncio.ensure_future(process.wait())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({exited, stopped}, timeout=timeout, return_when=FIRST_COMPLETED)
    finally:
        # Runs on exit, timeout, stop and cancellation alike: nothing of the build survives it.
        stopped.cancel()
        ended_early = not exited.done()
        exited.cancel()
        leftovers = await asyncio.shield(end_tree(process.pid, marker, kill_grace, cgroup))
        with contextlib.suppress(TimeoutError):
            # Bounded: a process that escaped group and marker could hold the pipe for ever.
            await asyncio.wait_for(asyncio.shield(process.wait()), DRAIN_TIMEOUT)
        try:
            await asyncio.wait_for(asyncio.shield(pump), DRAIN_TIMEOUT)
        except TimeoutError:
            pump.cancel()
        finally:
            process.close_pipes()  # also when writing the log failed (a full disk)
        log.write(masker.flush())
    stop_reason = stop.reason if ended_early else None
    return MakeOutcome(
        exit_code=None if ended_early else process.returncode,
        timed_out=ended_early and stop_reason is None,
        stopped=stop_reason,
        started_at=started_at,
        duration=time.monotonic() - started,
        leftovers=[p for p in leftovers if p.pid != process.pid],
    )


async def _spawn_in(
    cgroup: BuildCgroup, argv: Sequence[str], *, workspace: Path, env: Mapping[str, str]
) -> Child:
    lock = os.open(cgroup.lock_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # nobody else ever takes it: no wait
        # -o: the lock's descriptor is not passed on to the build.
        trampoline = [_flock(), "-o", "-s", str(cgroup.lock_path), *argv]
        process = await spawn(
            trampoline, cwd=workspace, env=env, merge_stderr=True, new_session=True
        )
        try:
            cgroup.place(process.pid)
        except BaseException:
            process.kill()
            process.close_pipes()
            raise
    finally:
        os.close(lock)  # the trampoline takes its shared lock and runs the command, placed
    return process


@functools.cache
def _flock() -> str:
    found = shutil.which("flock")
    if found is None:
        raise FileNotFoundError("flock (util-linux) is needed to start builds in their cgroups")
    return found


async def _pump(stream: PipeReader, log: BuildLog, masker: SecretMasker) -> None:
    while chunk := await stream.read():
        log.write(masker.feed(chunk))
