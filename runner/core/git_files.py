"""What a bare repository's files say without a git process: whether a ref points at a commit,
whether the object store holds an object. A checkout asks these first (a git process costs
milliseconds on a build's way to make) and asks git when they cannot tell.
"""

import mmap
import re
from pathlib import Path

from runner.core.names import is_branch_name


def stored_object(git_dir: Path, sha: str) -> bool | None:
    """Whether the object store of the bare repository at `git_dir` holds object `sha`: a loose
    object file, or an entry of a pack index (version 2: a fan-out table of 256 counts, then
    the sorted ids, which is what git reads too). None when it cannot tell from the files
    (another format, borrowed objects): then git is asked."""
    if not _SHA1.fullmatch(sha):
        return None
    objects = git_dir / "objects"
    if (objects / "info" / "alternates").exists():
        return None
    if (objects / sha[:2] / sha[2:]).is_file():
        return True
    wanted = bytes.fromhex(sha)
    for index in (objects / "pack").glob("pack-*.idx"):
        try:
            found = _in_pack_index(index, wanted)
        except (OSError, ValueError):
            return None
        if found is None:
            return None
        if found:
            return True
    return False


def _in_pack_index(index: Path, wanted: bytes) -> bool | None:
    with index.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:8] != b"\xfftOc\x00\x00\x00\x02":
            return None
        first = wanted[0]
        low = int.from_bytes(data[4 + 4 * first : 8 + 4 * first], "big") if first else 0
        high = int.from_bytes(data[8 + 4 * first : 12 + 4 * first], "big")
        ids = 8 + 256 * 4
        while low < high:  # the ids whose first byte is `first`, sorted
            middle = (low + high) // 2
            at = data[ids + 20 * middle : ids + 20 * middle + 20]
            if at == wanted:
                return True
            if at < wanted:
                low = middle + 1
            else:
                high = middle
        return False


_SHA1 = re.compile(r"[0-9a-f]{40}")


def ref_points_at(git_dir: Path, ref: str, sha: str) -> bool:
    """Whether `ref` of the repository at `git_dir` is `sha`: its loose file, else its line in
    `packed-refs` (a loose ref wins, as in git). Only branch and pull request refs are read,
    and only names that are safe as paths."""
    if ref.startswith("refs/heads/"):
        if not is_branch_name(ref.removeprefix("refs/heads/")):
            return False
    elif not _PULL_REF.fullmatch(ref):
        return False
    try:
        return (git_dir / ref).read_text().strip() == sha
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        packed = (git_dir / "packed-refs").read_text()
    except OSError:
        return False
    return f"{sha} {ref}" in packed.splitlines()


_PULL_REF = re.compile(r"refs/pull/[0-9]{1,10}/head")
