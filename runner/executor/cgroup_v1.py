"""Build cgroups in the legacy hierarchies (cgroup v1: `memory`, `pids`, `freezer`), as on
the development machine and CI: the end is freeze, kill, thaw."""

import functools
import signal
from pathlib import Path

from runner.executor.cgroup_base import (
    BuildCgroup,
    CgroupTree,
    counter,
    end_leftover,
    frozen,
    make,
    read_pids,
    rmdir,
    walk_dirs,
    write,
    write_if_there,
)


class LegacyCgroup(BuildCgroup):
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths  # controller → this cgroup's directory in its hierarchy

    def place(self, pid: int) -> None:
        for path in self.paths.values():
            write(path / "cgroup.procs", str(pid))

    def self_placement_files(self) -> list[Path]:
        return [path / "tasks" for path in self.paths.values()]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            for directory in walk_dirs(path):
                found.update(read_pids(directory / "cgroup.procs"))
        return sorted(found)

    def kill_all(self) -> None:
        freezer = self.paths.get("freezer")
        if freezer is None:
            self.signal_all(signal.SIGKILL)
            return
        with frozen(freezer / "freezer.state", "FROZEN", "THAWED"):
            self.signal_all(signal.SIGKILL)

    def oom_kills(self) -> int:
        memory = self.paths.get("memory")
        return counter(memory / "memory.oom_control", "oom_kill") if memory else 0

    def remove(self) -> None:
        for path in self.paths.values():
            for directory in reversed(list(walk_dirs(path))):
                rmdir(directory)


class LegacyTree(CgroupTree):
    kind = "cgroup v1"

    def __init__(self, bases: dict[str, Path]) -> None:
        self.bases = bases  # controller → this installation's directory in that hierarchy
        self.limits = {"memory", "pids"} <= set(bases)

    def create(self, name: str, *, memory_max: int | None, tasks_max: int | None) -> BuildCgroup:
        end_leftover(self.existing(name))
        paths = {controller: base / name for controller, base in self.bases.items()}
        for path in paths.values():
            make(path, functools.partial(path.parent.mkdir, exist_ok=True))
        if memory_max is not None:
            memory = paths["memory"]
            write(memory / "memory.limit_in_bytes", str(memory_max))
            # With swap accounting, memory and swap together: the limit is memory, not swap.
            write_if_there(memory / "memory.memsw.limit_in_bytes", str(memory_max))
        if tasks_max is not None:
            write(paths["pids"] / "pids.max", str(tasks_max))
        return LegacyCgroup(paths)

    def names(self) -> list[str]:
        return sorted(
            {path.name for base in self.bases.values() if base.is_dir() for path in base.iterdir()
             if path.is_dir()}
        )  # fmt: skip

    def existing(self, name: str) -> BuildCgroup | None:
        paths = {controller: base / name for controller, base in self.bases.items()}
        return LegacyCgroup(paths) if any(p.is_dir() for p in paths.values()) else None

    def describe(self) -> str:
        controllers = ", ".join(sorted(self.bases))
        return f"{self.kind} ({controllers}) under {next(iter(self.bases.values()))}"

    def release(self) -> None:
        for base in self.bases.values():
            rmdir(base)
