"""Each build in a cgroup of its own: memory and process limits, and an end nothing escapes.

A process can leave its process group (`setsid`) and drop the environment marker (`env -i`), but
it cannot leave its cgroup unless it may write to the cgroup files, which a build running as
`builds.user` may not. So when the host gives the daemon a cgroup subtree, every build gets
`build-{id}-{attempt}` in it: `memory_max` and `tasks_max` apply to its whole process tree, and
ending the build ends whatever is in the cgroup.

Two kinds of host, one interface (`CgroupTree`, `BuildCgroup`):
- the unified hierarchy (cgroup v2), as production hosts and systemd's `Delegate=yes` give it:
  limits through `memory.max` and `pids.max`, the end through `cgroup.kill`;
- the legacy hierarchies (cgroup v1: `memory`, `pids`, `freezer`), as this development machine
  and CI have: limits through `memory.limit_in_bytes` and `pids.max`, the end by freezing the
  cgroup, killing what is in it, and thawing.

`find_cgroup_tree` picks what the host has, or says why there is none; the daemon then keeps its
other layers (process group, marker, sandbox) and says so once.
"""

import contextlib
import errno
import hashlib
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FREEZE_WAIT = 2.0
POLL = 0.01


class BuildCgroup(ABC):
    """One build's cgroup."""

    @property
    @abstractmethod
    def lock_path(self) -> Path:
        """A directory of the cgroup: `flock` on it holds a new child until it is placed."""

    @abstractmethod
    def place(self, pid: int) -> None:
        """Move process `pid` (before it starts any child) into the cgroup."""

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
    def existing(self, name: str) -> BuildCgroup | None:
        """The cgroup `name` if it exists (left by a daemon that died)."""

    @abstractmethod
    def describe(self) -> str:
        """Where, in words, for the log and check-config."""

    @abstractmethod
    def release(self) -> None:
        """At shutdown: remove the installation's directory unless another daemon's builds
        (blue/green) still use it."""


def build_cgroup_name(build_id: int, attempt: int) -> str:
    return f"build-{build_id}-{attempt}"


def installation_name(public_url: str) -> str:
    """Unique per installation on a host (like the process marker): its public URL, hashed."""
    return "hobotnica-" + hashlib.sha256(public_url.encode()).hexdigest()[:12]


# -- cgroup v2 ---------------------------------------------------------------------------------


class UnifiedCgroup(BuildCgroup):
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def lock_path(self) -> Path:
        return self.path

    def place(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        found: list[int] = []
        for directory in _walk_dirs(self.path):  # a sub-cgroup a root build made, too
            found += _read_pids(directory / "cgroup.procs")
        return found

    def kill_all(self) -> None:
        kill = self.path / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(FileNotFoundError):
                _write(kill, "1")
            return
        with _frozen(self.path / "cgroup.freeze", "1", "0"):  # before Linux 5.14
            self.signal_all(signal.SIGKILL)

    def oom_kills(self) -> int:
        return _counter(self.path / "memory.events", "oom_kill")

    def remove(self) -> None:
        for directory in reversed(list(_walk_dirs(self.path))):
            _rmdir(directory)


class UnifiedTree(CgroupTree):
    kind = "cgroup v2"

    def __init__(self, base: Path, *, limits: bool) -> None:
        self.base = base
        self.limits = limits

    def create(self, name: str, *, memory_max: int | None, tasks_max: int | None) -> BuildCgroup:
        _end_leftover(self.existing(name))
        path = self.base / name
        path.mkdir()
        if memory_max is not None:
            _write(path / "memory.max", str(memory_max))
            _write_if_there(path / "memory.swap.max", "0")  # the limit is memory, not swap
            _write_if_there(path / "memory.oom.group", "1")  # one process over: the whole build
        if tasks_max is not None:
            _write(path / "pids.max", str(tasks_max))
        return UnifiedCgroup(path)

    def existing(self, name: str) -> BuildCgroup | None:
        path = self.base / name
        return UnifiedCgroup(path) if path.is_dir() else None

    def describe(self) -> str:
        limits = "memory and process limits" if self.limits else "no limits (no controllers)"
        return f"{self.kind} under {self.base}, {limits}"

    def release(self) -> None:
        _rmdir(self.base)

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
        offered = set(_read(own / "cgroup.controllers").split())
        limits = wanted <= offered
        base = own / installation
        if not make:
            return cls(base, limits=limits)
        if not is_root:
            leaf = own / "daemon"
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", str(os.getpid()))
        base.mkdir(exist_ok=True)
        if limits:
            enable = " ".join(f"+{name}" for name in sorted(wanted))
            _write(own / "cgroup.subtree_control", enable)
            _write(base / "cgroup.subtree_control", enable)
        return cls(base, limits=limits)


# -- cgroup v1 ---------------------------------------------------------------------------------


class LegacyCgroup(BuildCgroup):
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths  # controller → this cgroup's directory in its hierarchy

    @property
    def lock_path(self) -> Path:
        return next(iter(self.paths.values()))

    def place(self, pid: int) -> None:
        for path in self.paths.values():
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            for directory in _walk_dirs(path):
                found.update(_read_pids(directory / "cgroup.procs"))
        return sorted(found)

    def kill_all(self) -> None:
        freezer = self.paths.get("freezer")
        if freezer is None:
            self.signal_all(signal.SIGKILL)
            return
        with _frozen(freezer / "freezer.state", "FROZEN", "THAWED"):
            self.signal_all(signal.SIGKILL)

    def oom_kills(self) -> int:
        memory = self.paths.get("memory")
        return _counter(memory / "memory.oom_control", "oom_kill") if memory else 0

    def remove(self) -> None:
        for path in self.paths.values():
            for directory in reversed(list(_walk_dirs(path))):
                _rmdir(directory)


class LegacyTree(CgroupTree):
    kind = "cgroup v1"

    def __init__(self, bases: dict[str, Path]) -> None:
        self.bases = bases  # controller → this installation's directory in that hierarchy
        self.limits = {"memory", "pids"} <= set(bases)

    def create(self, name: str, *, memory_max: int | None, tasks_max: int | None) -> BuildCgroup:
        _end_leftover(self.existing(name))
        paths = {controller: base / name for controller, base in self.bases.items()}
        for path in paths.values():
            path.mkdir()
        if memory_max is not None:
            memory = paths["memory"]
            _write(memory / "memory.limit_in_bytes", str(memory_max))
            # With swap accounting, memory and swap together: the limit is memory, not swap.
            _write_if_there(memory / "memory.memsw.limit_in_bytes", str(memory_max))
        if tasks_max is not None:
            _write(paths["pids"] / "pids.max", str(tasks_max))
        return LegacyCgroup(paths)

    def existing(self, name: str) -> BuildCgroup | None:
        paths = {controller: base / name for controller, base in self.bases.items()}
        return LegacyCgroup(paths) if any(p.is_dir() for p in paths.values()) else None

    def describe(self) -> str:
        controllers = ", ".join(sorted(self.bases))
        return f"{self.kind} ({controllers}) under {next(iter(self.bases.values()))}"

    def release(self) -> None:
        for base in self.bases.values():
            _rmdir(base)


# -- finding what the host has -----------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    point: Path
    fstype: str
    options: frozenset[str]


def find_cgroup_tree(public_url: str, *, make: bool = True) -> tuple[CgroupTree | None, str]:
    """This daemon's cgroup tree for builds, or None, and where it is or why there is none.

    The unified hierarchy is used when this process's cgroup is the root or is its own (a
    systemd unit with `Delegate=yes`), never a cgroup it shares (a login session's). `make`
    False changes nothing on the host (check-config).
    """
    installation = installation_name(public_url)
    try:
        mounts = _cgroup_mounts()
        own = _own_cgroups()
    except OSError as error:
        return None, f"cannot read the cgroups of this process: {error.strerror}"
    reasons: list[str] = []
    # Look first, change nothing; then make only the tree that is chosen.
    v2 = _unified_tree(mounts, own, installation, reasons, make=False)
    v1 = _legacy_tree(mounts, own, installation, reasons, make=False)
    chosen: CgroupTree | None = next(
        (tree for tree in (v2, v1) if tree is not None and tree.limits), v2 or v1
    )
    if chosen is None:
        return None, "; ".join(reasons) or "no cgroup hierarchy is mounted"
    if make:
        made = (
            _unified_tree(mounts, own, installation, reasons, make=True)
            if chosen is v2
            else _legacy_tree(mounts, own, installation, reasons, make=True)
        )
        if made is None:
            return None, "; ".join(reasons)
        chosen = made
    return chosen, chosen.describe()


def _unified_tree(
    mounts: list[_Mount], own: dict[str, str], installation: str, reasons: list[str], *, make: bool
) -> UnifiedTree | None:
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is None or "" not in own:
        return None
    own_dir = unified.point / own[""].lstrip("/")
    is_root = own[""] == "/"
    if not os.access(own_dir, os.W_OK):
        reasons.append(f"cgroup v2: {own_dir} is not writable (no Delegate=yes)")
        return None
    if not is_root and set(_read_pids(own_dir / "cgroup.procs")) - {os.getpid()}:
        reasons.append(f"cgroup v2: {own_dir} is shared with other processes (no Delegate=yes)")
        return None
    try:
        return UnifiedTree.prepare(own_dir, installation, is_root=is_root, make=make)
    except OSError as error:
        reasons.append(f"cgroup v2 at {own_dir}: {error.strerror}")
        return None


def _legacy_tree(
    mounts: list[_Mount], own: dict[str, str], installation: str, reasons: list[str], *, make: bool
) -> LegacyTree | None:
    bases: dict[str, Path] = {}
    for controller in ("memory", "pids", "freezer"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is None or controller not in own:
            continue
        base = mount.point / own[controller].lstrip("/") / installation
        try:
            if make:
                base.mkdir(exist_ok=True)
            elif not os.access(base.parent, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except OSError as error:
            reasons.append(f"cgroup v1 {controller}: {error.strerror}")
            continue
        bases[controller] = base
    return LegacyTree(bases) if bases else None


def _cgroup_mounts() -> list[_Mount]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        fstype = fields[separator + 1]
        if fstype in ("cgroup", "cgroup2"):
            options = frozenset(fields[separator + 3].split(","))
            mounts.append(_Mount(Path(fields[4]), fstype, options))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Controller → this process's cgroup path; "" is the unified hierarchy's."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


# -- files -------------------------------------------------------------------------------------


def _end_leftover(cgroup: BuildCgroup | None) -> None:
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


def _walk_dirs(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        return
    yield path
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            if child.is_dir():
                yield from _walk_dirs(child)


def _write(path: Path, text: str) -> None:
    with path.open("w") as file:
        file.write(text)


def _write_if_there(path: Path, text: str) -> None:
    if path.exists():
        _write(path, text)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _read_pids(path: Path) -> list[int]:
    return [int(line) for line in _read(path).split()]


def _counter(path: Path, name: str) -> int:
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            raise


@contextlib.contextmanager
def _frozen(state: Path, freeze: str, thaw: str) -> Iterator[None]:
    """Nothing in the cgroup runs (or forks) inside the block; best effort without a freezer."""
    try:
        _write(state, freeze)
    except OSError:
        yield
        return
    deadline = time.monotonic() + FREEZE_WAIT
    while time.monotonic() < deadline and not _is_frozen(state, freeze):
        time.sleep(POLL)  # still freezing: tasks are being stopped
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _write(state, thaw)


def _is_frozen(state: Path, freeze: str) -> bool:
    if state.name == "cgroup.freeze":  # v2: the outcome is in cgroup.events
        return _counter(state.with_name("cgroup.events"), "frozen") == 1
    return _read(state).strip() == freeze
