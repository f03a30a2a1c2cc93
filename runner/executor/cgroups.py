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

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from runner.executor.cgroup_base import BuildCgroup, CgroupTree, end_now, read_pids
from runner.executor.cgroup_v1 import LegacyTree
from runner.executor.cgroup_v2 import UnifiedTree

__all__ = [
    "BuildCgroup",
    "CgroupTree",
    "build_cgroup_name",
    "end_now",
    "find_cgroup_tree",
    "installation_name",
]


def build_cgroup_name(build_id: int, attempt: int) -> str:
    return f"build-{build_id}-{attempt}"


def parse_build_cgroup_name(name: str) -> tuple[int, int] | None:
    """(build id, attempt) of a build's cgroup name; None for any other name."""
    kind, _, rest = name.partition("-")
    build_id, _, attempt = rest.partition("-")
    if kind != "build" or not build_id.isdigit() or not attempt.isdigit():
        return None
    return int(build_id), int(attempt)


def installation_name(public_url: str) -> str:
    """Unique per installation on a host (like the process marker): its public URL, hashed."""
    return "hobotnica-" + hashlib.sha256(public_url.encode()).hexdigest()[:12]


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
    if not is_root and set(read_pids(own_dir / "cgroup.procs")) - {os.getpid()}:
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
