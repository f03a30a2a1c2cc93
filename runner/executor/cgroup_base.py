"""What a build's cgroup is, whatever the hierarchy (`runner.executor.cgroups`), and the few
file operations both hierarchies are made of."""

import contextlib
import errno
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

FREEZE_WAIT = 2.0
POLL = 0.01


class BuildCgroup(ABC):
    """One build's cgroup."""

    @abstractmethod
    def place(self, pid: int) -> None:
        """Move process `pid` (before it starts any child) into the cgroup."""

    def self_placement_files(self) -> list[Path] | None:
        """Files a process writes `0` to, to move its own thread into the cgroup without the
        kernel's global lock (`runner.executor.placement`); None: not in this hierarchy."""
        return None

    @abstractmethod
    def pids(self) -> list[int]:
        """The processes in the cgroup now."""

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL everything in the cgroup, including what forks meanwhile."""

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel ended for going over `memory_max`."""

    @abstractmethod
    def remove(self) -> None:
        """Delete the (empty) cgroup."""

    def signal_all(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


class CgroupTree(ABC):
    """Where this daemon makes its builds' cgroups."""

    kind: str
    limits: bool  # whether memory_max and tasks_max can be enforced

    @abstractmethod
    def create(self, name: str, *, memory_max: int | None, tasks_max: int | None) -> BuildCgroup:
        """A new cgroup `name` with these limits (an old one of that name is ended first)."""

    @abstractmethod
    def names(self) -> list[str]:
        """The names of the builds' cgroups there now."""

    @abstractmethod
    def existing(self, name: str) -> BuildCgroup | None:
        """The cgroup `name` if it exists (left by a daemon that died)."""

    @abstractmethod
    def describe(self) -> str:
        """Where, in words, for the log and check-config."""

    @abstractmethod
    def release(self) -> None:
        """At shutdown: remove the installation's directory unless another daemon's builds
        (blue/green) still use it."""


def make(path: Path, ensure_parent: Callable[[], None]) -> None:
    """`mkdir` a build's cgroup; its parent, the installation's, may have been released by the
    other daemon of a blue/green pair an instant ago: made again, once."""
    try:
        path.mkdir()
    except FileNotFoundError:
        ensure_parent()
        path.mkdir()


def end_leftover(cgroup: BuildCgroup | None) -> None:
    """A cgroup of the same name is what an earlier daemon left of this attempt: end it."""
    if cgroup is not None:
        end_now(cgroup)


def end_now(cgroup: BuildCgroup, wait: float = FREEZE_WAIT) -> list[int]:
    """SIGKILL everything in `cgroup` until it is empty (or `wait` passes), then remove it."""
    deadline = time.monotonic() + wait
    left = cgroup.pids()
    while left and time.monotonic() < deadline:
        cgroup.kill_all()
        time.sleep(POLL)
        left = cgroup.pids()
    cgroup.remove()
    return left


def walk_dirs(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        return
    yield path
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            if child.is_dir():
                yield from walk_dirs(child)


def write(path: Path, text: str) -> None:
    with path.open("w") as file:
        file.write(text)


def write_if_there(path: Path, text: str) -> None:
    if path.exists():
        write(path, text)


def read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in read(path).split()]


def counter(path: Path, name: str) -> int:
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            raise


@contextlib.contextmanager
def frozen(state: Path, freeze: str, thaw: str) -> Iterator[None]:
    """Nothing in the cgroup runs (or forks) inside the block; best effort without a freezer."""
    try:
        write(state, freeze)
    except OSError:
        yield
        return
    deadline = time.monotonic() + FREEZE_WAIT
    while time.monotonic() < deadline and not is_frozen(state, freeze):
        time.sleep(POLL)  # still freezing: tasks are being stopped
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            write(state, thaw)


def is_frozen(state: Path, freeze: str) -> bool:
    if state.name == "cgroup.freeze":  # v2: the outcome is in cgroup.events
        return counter(state.with_name("cgroup.events"), "frozen") == 1
    return read(state).strip() == freeze
