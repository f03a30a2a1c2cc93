"""Child processes (git, make) on both event loops the daemon runs on: asyncio and uvloop.

The daemon runs on uvloop; most tests run on asyncio. Each check here runs on both loops, in a
loop of its own, as the daemon does.
"""

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from runner.core.spawn import Child, spawn

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
# libuv opens its process-wide signal pipe with the first uvloop loop and keeps it: open it now,
# so the descriptor counts below see only what the checks themselves leave.
uvloop.new_event_loop().close()


def run_on(loop_name: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        return runner.run(coroutine)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


async def turns_until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Give the loop's other tasks turns until `condition` holds (counted, never timed)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not so after {turns} turns of the loop")


async def shell(script: str, **options: Any) -> Child:
    return await spawn(["/bin/sh", "-c", script], env=ENV, **options)


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_output_errors_and_exit_code_come_back_apart(loop_name: str) -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        child = await shell("echo out; echo err >&2; exit 3")
        out, err = await child.communicate()
        return out, err, await child.wait()

    assert run_on(loop_name, scenario()) == (b"out\n", b"err\n", 3)


def test_merged_output_keeps_its_order_and_the_working_directory(
    loop_name: str, tmp_path: Path
) -> None:
    async def scenario() -> bytes:
        child = await shell("pwd; echo two >&2; echo three", cwd=tmp_path, merge_stderr=True)
        assert child.stderr is None
        output = await child.stdout.read_all()
        assert await child.wait() == 0
        return output

    assert run_on(loop_name, scenario()) == f"{tmp_path}\ntwo\nthree\n".encode()


def test_the_exit_is_seen_while_a_grandchild_still_holds_the_pipe(
    loop_name: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"

    async def scenario() -> tuple[int, bytes]:
        # The child exits at once; its grandchild keeps the pipe open until released.
        child = await shell(
            f"(while [ ! -e {release} ]; do sleep 0.01; done; echo late) & echo early",
            merge_stderr=True,
        )
        code = await asyncio.wait_for(child.wait(), 10)
        early = await child.stdout.read()
        release.touch()
        rest = await asyncio.wait_for(child.stdout.read_all(), 10)
        return code, early + rest

    assert run_on(loop_name, scenario()) == (0, b"early\nlate\n")


def test_closing_the_pipes_ends_a_waiting_read_and_leaves_no_descriptor(
    loop_name: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    before = open_fds()

    async def scenario() -> bytes:
        child = await shell(f"while [ ! -e {release} ]; do sleep 0.01; done", merge_stderr=True)
        reading = asyncio.ensure_future(child.stdout.read())
        await turns_until(lambda: child.stdout._readable is not None)  # waiting for the pipe
        assert not reading.done()
        child.close_pipes()
        chunk = await asyncio.wait_for(reading, 10)
        release.touch()
        await asyncio.wait_for(child.wait(), 10)
        return chunk

    assert run_on(loop_name, scenario()) == b""
    assert open_fds() <= before


def test_a_program_that_cannot_start_raises_and_leaves_no_descriptor(loop_name: str) -> None:
    before = open_fds()

    async def scenario() -> None:
        await spawn(["/nonexistent/program"], env=ENV)

    with pytest.raises(FileNotFoundError):
        run_on(loop_name, scenario())
    assert open_fds() <= before


def test_many_children_never_close_another_threads_files(loop_name: str) -> None:
    """uvloop's connect_read_pipe closes a pipe's descriptor twice; with threads (the store, the
    workspace clean-up) the second close hit another thread's directory during an rmtree."""
    failures: list[OSError] = []
    done = threading.Event()
    base = Path(tempfile.mkdtemp())

    def churn_files() -> None:
        tree = base / "tree"
        while not done.is_set():
            (tree / "a" / "b").mkdir(parents=True, exist_ok=True)
            for n in range(20):
                (tree / "a" / f"file-{n}").touch()
            try:
                shutil.rmtree(tree)
            except OSError as error:
                failures.append(error)
                shutil.rmtree(tree, ignore_errors=True)

    async def scenario() -> None:
        deadline = time.monotonic() + 30
        for _ in range(300):
            child = await spawn(["/bin/echo", "hi"], env=ENV)
            assert await child.communicate() == (b"hi\n", b"")
            assert time.monotonic() < deadline

    before = open_fds()
    churner = threading.Thread(target=churn_files)
    churner.start()
    try:
        run_on(loop_name, scenario())
    finally:
        done.set()
        churner.join()
        shutil.rmtree(base, ignore_errors=True)
    assert failures == []
    assert open_fds() <= before


def test_a_child_that_prints_without_pause_leaves_the_loop_its_turns(loop_name: str) -> None:
    """The daemon's webhooks share the loop with a build's log pump: every chunk read must give
    the other tasks a turn (counted in turns, not timed)."""

    async def scenario() -> tuple[int, int]:
        turns = 0
        reading = True

        async def other_task() -> None:
            nonlocal turns
            while reading:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(other_task())
        child = await shell("head -c 16777216 /dev/zero", merge_stderr=True)
        chunks = 0
        while await child.stdout.read():
            chunks += 1
        reading = False
        await ticker
        await child.wait()
        return chunks, turns

    chunks, turns = run_on(loop_name, scenario())
    assert chunks >= 16 * 1024 * 1024 // (64 * 1024)  # 16 MiB in reads of at most 64 KiB
    assert turns >= chunks
