"""Run one make target as an owned process tree and stream its output, masked, into the log.

`make` starts in a new session (its own process group) with stdin from /dev/null, from an argument
list, never a shell. Whatever way the target ends — exit, timeout, cancellation — the whole tree is
ended before this returns, so a `some-daemon &` left behind never outlives its build.
"""

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.build.logfile import BuildLog
from runner.build.masking import SecretMasker
from runner.build.reaper import Leftover, end_tree

READ_SIZE = 64 * 1024
# Once the tree is ended no writer is left; this only bounds a reader stuck on a leaked pipe.
DRAIN_TIMEOUT = 5.0


@dataclass
class MakeOutcome:
    exit_code: int | None
    timed_out: bool
    started_at: float
    duration: float
    leftovers: list[Leftover] = field(default_factory=list)


async def run_make(
    target: str,
    *,
    workspace: Path,
    env: Mapping[str, str],
    timeout: float,
    kill_grace: float,
    log: BuildLog,
    masker: SecretMasker,
    marker: bytes,
) -> MakeOutcome:
    started_at = time.time()
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        "make",
        target,
        cwd=workspace,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    pump = asyncio.create_task(_pump(process.stdout, log, masker))
    timed_out = False
    leftovers: list[Leftover] = []
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # Runs on exit, timeout and cancellation alike: nothing of the build survives it.
        leftovers = await asyncio.shield(end_tree(process.pid, marker, kill_grace))
        await process.wait()
        try:
            await asyncio.wait_for(asyncio.shield(pump), DRAIN_TIMEOUT)
        except TimeoutError:
            pump.cancel()
        log.write(masker.flush())
    return MakeOutcome(
        exit_code=None if timed_out else process.returncode,
        timed_out=timed_out,
        started_at=started_at,
        duration=time.monotonic() - started,
        leftovers=[p for p in leftovers if p.pid != process.pid],
    )


async def _pump(stream: asyncio.StreamReader, log: BuildLog, masker: SecretMasker) -> None:
    while chunk := await stream.read(READ_SIZE):
        log.write(masker.feed(chunk))
