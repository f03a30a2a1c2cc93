"""Child processes (git, make): started by CPython's subprocess, watched by the event loop.

The daemon's default loop, uvloop, starts children with fork(), which copies the daemon's page
tables: 2 to 4 ms a process here, and a build starts several. CPython's subprocess uses vfork,
under a millisecond whatever the daemon's size. So children are started with `subprocess.Popen`
on either loop, their exit is read from a pidfd, and their pipes are read here, from file
descriptors this module alone closes: uvloop's `connect_read_pipe` closes a pipe's descriptor
twice, and in a threaded daemon the second close can hit another thread's file.
"""

import asyncio
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

EXIT_POLL_SECONDS = 0.02  # only without pidfds (Linux before 5.3)
READ_SIZE = 64 * 1024


class PipeReader:
    """The read end of a child's pipe, read only when asked: a slow reader holds the child back."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._readable: asyncio.Future[None] | None = None

    async def read(self, size: int = READ_SIZE) -> bytes:
        """Up to `size` bytes once there are any; b"" at the end, and from then on."""
        while self._fd >= 0:
            try:
                chunk = os.read(self._fd, size)
            except BlockingIOError:
                await self._wait_readable()
                continue
            if not chunk:
                self.close()
            else:
                # A child that prints without pause must not keep the loop from its webhooks.
                await asyncio.sleep(0)
            return chunk
        return b""

    async def read_all(self) -> bytes:
        chunks = []
        while chunk := await self.read():
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Stop reading; a read waiting now ends with b"". Safe to call more than once."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        self._loop.remove_reader(fd)
        os.close(fd)
        self._wake()

    async def _wait_readable(self) -> None:
        fd = self._fd
        self._readable = self._loop.create_future()
        self._loop.add_reader(fd, self._wake)
        try:
            await self._readable
        finally:
            self._readable = None
            if self._fd == fd:  # not closed meanwhile
                self._loop.remove_reader(fd)

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)


class PipeWriter:
    """The write end of a child's stdin pipe: a write waits while the pipe is full."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop = asyncio.get_running_loop()

    async def write(self, data: bytes) -> None:
        """All of `data`; BrokenPipeError once the child has stopped reading, or after close."""
        view = memoryview(data)
        while view:
            if self._fd < 0:
                raise BrokenPipeError("the pipe is closed")
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._writable()

    def close(self) -> None:
        """The end of the child's input. Safe to call more than once."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    async def _writable(self) -> None:
        fd = self._fd
        writable: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not writable.done():
                writable.set_result(None)

        self._loop.add_writer(fd, wake)
        try:
            await writable
        finally:
            self._loop.remove_writer(fd)


class Child:
    """A started child process: its output pipes, its input pipe if asked for, and its own exit
    (not its pipes' end)."""

    def __init__(
        self,
        popen: "subprocess.Popen[bytes]",
        stdout: PipeReader,
        stderr: PipeReader | None,
        stdin: PipeWriter | None = None,
    ) -> None:
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self._exited = asyncio.get_running_loop().create_future()
        self._poller: asyncio.Task[None] | None = None
        self._watch_exit()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """Until the process itself has exited (reaped), whatever holds its pipes open."""
        await asyncio.shield(self._exited)
        assert self._popen.returncode is not None
        return self._popen.returncode

    async def communicate(self) -> tuple[bytes, bytes]:
        """Everything it writes, to the end of both pipes, and its exit."""
        assert self.stderr is not None
        out, err, _ = await asyncio.gather(
            self.stdout.read_all(), self.stderr.read_all(), self.wait()
        )
        return out, err

    def kill(self) -> None:
        self._popen.kill()  # a no-op once reaped: the pid is never signalled after reuse

    def close_pipes(self) -> None:
        """Stop reading, e.g. a pipe a leaked grandchild keeps open after the tree was ended."""
        self.stdout.close()
        if self.stderr is not None:
            self.stderr.close()
        if self.stdin is not None:
            self.stdin.close()

    def _watch_exit(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self._popen.pid)
        except OSError:  # no pidfd: ask the kernel now and then
            self._poller = loop.create_task(self._poll_exit())
            return

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._popen.wait()  # it has exited: this reaps it at once
            self._exited.set_result(None)

        loop.add_reader(pidfd, on_exit)

    async def _poll_exit(self) -> None:
        while self._popen.poll() is None:  # noqa: ASYNC110 - nothing to wait on but time
            await asyncio.sleep(EXIT_POLL_SECONDS)
        self._exited.set_result(None)


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    merge_stderr: bool = False,
    new_session: bool = False,
    pass_fds: Sequence[int] = (),
    stdin_pipe: bool = False,
) -> Child:
    """Start `argv` (never through a shell) with stdin from /dev/null, or a pipe (`Child.stdin`)
    with `stdin_pipe`, and its output piped; `pass_fds`: descriptors the child inherits, at the
    same numbers."""
    in_read, in_write = os.pipe2(os.O_CLOEXEC) if stdin_pipe else (-1, -1)
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC) if not merge_stderr else (-1, out_write)
    try:
        # Blocks only until the child has exec'd, as asyncio's own loop does.
        popen = subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=in_read if stdin_pipe else subprocess.DEVNULL,
            stdout=out_write,
            stderr=err_write,
            start_new_session=new_session,
            pass_fds=tuple(pass_fds),
        )
    except BaseException:
        for fd in {out_read, err_read, in_write} - {-1}:
            os.close(fd)
        raise
    finally:
        for fd in {out_write, err_write, in_read} - {-1}:
            os.close(fd)
    stderr = None if merge_stderr else PipeReader(err_read)
    stdin = PipeWriter(in_write) if stdin_pipe else None
    return Child(popen, PipeReader(out_read), stderr, stdin)
