"""Build cgroups in the unified hierarchy (cgroup v2): a subtree the daemon was given
(`Delegate=yes`), limits through `memory.max` and `pids.max`, the end through `cgroup.kill`."""

import contextlib
import os
import signal
from pathlib import Path

from runner.executor.cgroup_base import (
    BuildCgroup,
    CgroupTree,
    counter,
    end_leftover,
    frozen,
    make,
    read,
    read_pids,
    rmdir,
    walk_dirs,
    write,
    write_if_there,
)


class UnifiedCgroup(BuildCgroup):
    def __init__(self, path: Path) -> None:
        self.path = path

    def place(self, pid: int) -> None:
        write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        found: list[int] = []
        for directory in walk_dirs(self.path):  # a sub-cgroup a root build made, too
            found += read_pids(directory / "cgroup.procs")
        return found

    def kill_all(self) -> None:
        kill = self.path / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(FileNotFoundError):
                write(kill, "1")
            return
        with frozen(self.path / "cgroup.freeze", "1", "0"):  # before Linux 5.14
            self.signal_all(signal.SIGKILL)

    def oom_kills(self) -> int:
        return counter(self.path / "memory.events", "oom_kill")

    def remove(self) -> None:
        for directory in reversed(list(walk_dirs(self.path))):
            rmdir(directory)


class UnifiedTree(CgroupTree):
    kind = "cgroup v2"

    def __init__(self, base: Path, *, limits: bool) -> None:
        self.base = base
        self.limits = limits

    def create(self, name: str, *, memory_max: int | None, tasks_max: int | None) -> BuildCgroup:
        end_leftover(self.existing(name))
        path = self.base / name
        make(path, self._ensure_base)
        if memory_max is not None:
            write(path / "memory.max", str(memory_max))
            write_if_there(path / "memory.swap.max", "0")  # the limit is memory, not swap
            write_if_there(path / "memory.oom.group", "1")  # one process over: the whole build
        if tasks_max is not None:
            write(path / "pids.max", str(tasks_max))
        return UnifiedCgroup(path)

    def names(self) -> list[str]:
        if not self.base.is_dir():
            return []
        return sorted(path.name for path in self.base.iterdir() if path.is_dir())

    def existing(self, name: str) -> BuildCgroup | None:
        path = self.base / name
        return UnifiedCgroup(path) if path.is_dir() else None

    def describe(self) -> str:
        limits = "memory and process limits" if self.limits else "no limits (no controllers)"
        return f"{self.kind} under {self.base}, {limits}"

    def release(self) -> None:
        rmdir(self.base)

    def _ensure_base(self) -> None:
        """Another daemon of this installation (blue/green) may have released it meanwhile."""
        self.base.mkdir(exist_ok=True)
        if self.limits:
            write(self.base / "cgroup.subtree_control", "+memory +pids")

    @classmethod
    def prepare(
        cls, own: Path, installation: str, *, is_root: bool, make: bool = True
    ) -> "UnifiedTree":
        """Builds under `own` (the daemon's delegated cgroup), with the controllers it offers.

        A cgroup with processes cannot hand controllers to its children ("no internal
        processes"), so a daemon that is not in the root cgroup first moves into a leaf of its
        own, as systemd asks of a service with `Delegate=yes`. `make` False: only say what
        would be done (check-config).
        """
        wanted = {"memory", "pids"}
        offered = set(read(own / "cgroup.controllers").split())
        limits = wanted <= offered
        base = own / installation
        if not make:
            return cls(base, limits=limits)
        if not is_root:
            leaf = own / "daemon"
            leaf.mkdir(exist_ok=True)
            write(leaf / "cgroup.procs", str(os.getpid()))
        base.mkdir(exist_ok=True)
        if limits:
            enable = " ".join(f"+{name}" for name in sorted(wanted))
            write(own / "cgroup.subtree_control", enable)
            write(base / "cgroup.subtree_control", enable)
        return cls(base, limits=limits)
