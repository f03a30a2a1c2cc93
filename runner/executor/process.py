"""Run one make target as an owned process tree and stream its output, masked, into the log.

`make` starts in a new session (its own process group) with stdin from /dev/null, from an argument
list, never a shell. Whatever way the target ends — exit, timeout, a stop request (a newer push
superseded it), or cancellation of the task (daemon shutdown) — the whole tree is ended before
this returns, so a `some-daemon &` left behind never outlives its build.

With a cgroup, the tree starts inside it: the first process is util-linux's `flock`, which waits
for a lock the daemon holds (`HeldStart`) while the daemon moves it into the cgroup, then runs
the command. So not one instruction of the build runs outside its cgroup, and the
daemon keeps starting children with vfork (a child cannot be placed before it execs otherwise).
Where it can, the first process moves itself, which is quicker (`runner.executor.placement`).
Either way the worker starts and places it while the checkout runs (`hold_start`), and
`run_make` only lets it go.
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
from runner.executor.placement import (
    PLACED,
    can_place_itself,
    environment_file,
    self_placing,
)
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
    held: "HeldStart | None" = None,
) -> MakeOutcome:
    """`held`: the first process, started in `cgroup` already (`hold_start`, same argv)."""
    if held is None and cgroup is not None:
        held = await hold_start(cgroup, argv, workspace=workspace, env=env)
    started_at = time.time()
    started = time.monotonic()
    if held is not None:
        process = held.release()
    else:
        process = await spawn(argv, cwd=workspace, env=env, merge_stderr=True, new_session=True)
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


class HeldStart:
    """A build's first process, in the build's cgroup, held until `release` lets it run the
    command: util-linux `flock` waits for a shared lock on a gate, an anonymous file the daemon
    holds locked. The held process keeps the gate open too (inherited), so a daemon that dies
    before the release never gives the lock up: the command never runs, and the next start
    ends the held process with the build's other leftovers. (The build inherits the gate,
    unlocked and empty, at the same descriptor.)"""

    def __init__(self, process: Child, gate: int) -> None:
        self.process = process
        self._gate = gate
        self.released = False

    def release(self) -> Child:
        if not self.released:
            self.released = True
            fcntl.flock(self._gate, fcntl.LOCK_UN)  # for the held process's copy too
            os.close(self._gate)
        return self.process

    async def abandon(self) -> None:
        """The build ends before make: the held process goes, having run nothing."""
        if self.released:
            return
        self.released = True
        self.process.kill()
        os.close(self._gate)
        await asyncio.shield(self.process.wait())
        self.process.close_pipes()


async def hold_start(
    cgroup: BuildCgroup, argv: Sequence[str], *, workspace: Path, env: Mapping[str, str]
) -> HeldStart:
    """Start `argv`'s first process in `cgroup`, held until `HeldStart.release`."""
    gate = os.memfd_create("hobotnica-gate", os.MFD_CLOEXEC)
    files = cgroup.self_placement_files()
    moves_itself = files is not None and can_place_itself()
    ready_read = ready_write = environment = -1  # only for a first process that moves itself
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # nobody else ever takes it: no wait
        # -o: the descriptor flock opens to wait on is not passed on to the build.
        command = [_flock(), "-o", "-s", f"/proc/self/fd/{gate}", *argv]
        spawn_env: Mapping[str, str] = env
        fds: tuple[int, ...] = (gate,)
        if moves_itself and files is not None:
            ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
            environment = environment_file(env)
            command = self_placing(command, files, ready_write, environment)
            spawn_env, fds = {}, (gate, ready_write, environment)  # `env` from `environment`
        process = await spawn(
            command,
            cwd=workspace,
            env=spawn_env,
            merge_stderr=True,
            new_session=True,
            pass_fds=fds,
        )
    except BaseException:
        os.close(gate)
        if ready_read >= 0:
            os.close(ready_read)
        raise
    finally:
        for descriptor in (ready_write, environment):
            if descriptor >= 0:
                os.close(descriptor)
    held = HeldStart(process, gate)
    if moves_itself:
        await _until_placed(held, PipeReader(ready_read))
        return held
    # The move waits for the kernel (an RCU grace period): not on the event loop. Cancelled
    # meanwhile, the move is waited out before the process is ended, so the cgroup is empty
    # when its owner removes it.
    placing = asyncio.ensure_future(asyncio.to_thread(cgroup.place, process.pid))
    try:
        await asyncio.shield(placing)
    except BaseException:
        with contextlib.suppress(BaseException):
            await asyncio.wait({placing})
        if placing.done() and not placing.cancelled():
            placing.exception()  # retrieved: it is the error being raised, or irrelevant now
        await held.abandon()
        raise
    return held


async def _until_placed(held: HeldStart, ready: PipeReader) -> None:
    """Until the first process says it moved itself into its cgroup (`placement`). One that
    could not has run nothing, and is ended; its reason is raised."""
    try:
        report = await ready.read_all()
        if report != PLACED:
            with contextlib.suppress(TimeoutError):
                said = await asyncio.wait_for(held.process.stdout.read_all(), DRAIN_TIMEOUT)
                report = said.strip()[-500:]
            reason = report.decode(errors="replace") or "it ended"
            raise OSError(f"the build's first process could not enter its cgroup: {reason}")
    except BaseException:
        await held.abandon()
        raise
    finally:
        ready.close()


@functools.cache
def _flock() -> str:
    found = shutil.which("flock")
    if found is None:
        raise FileNotFoundError("flock (util-linux) is needed to start builds in their cgroups")
    return found


async def _pump(stream: PipeReader, log: BuildLog, masker: SecretMasker) -> None:
    while chunk := await stream.read():
        log.write(masker.feed(chunk))
