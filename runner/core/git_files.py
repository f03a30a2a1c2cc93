"""What a bare repository's files say without a git process: whether a ref points at a commit,
whether the object store holds an object. A checkout asks these first (a git process costs
milliseconds on a build's way to make) and asks git when they cannot tell.
"""

import contextlib
import mmap
import os
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
    return read_ref(git_dir, ref) == sha


def read_ref(git_dir: Path, ref: str) -> str | None:
    """The commit `ref` points at (`is_readable_ref` names only), or None."""
    if not is_readable_ref(ref):
        return None
    try:
        return _sha_or_none((git_dir / ref).read_text().strip())
    except FileNotFoundError:
        pass
    except OSError:
        return None
    suffix = f" {ref}"
    for line in _packed_refs(git_dir):
        if line.endswith(suffix):
            return _sha_or_none(line.removesuffix(suffix))
    return None


def branch_tips(git_dir: Path, limit: int) -> list[str]:
    """Up to `limit` distinct commits the branches of the repository at `git_dir` point at,
    loose refs first (the recently moved ones), then `packed-refs`."""
    tips: dict[str, None] = {}
    heads = git_dir / "refs" / "heads"
    for path in sorted(heads.rglob("*"), key=_modified, reverse=True)[: 4 * limit]:
        ref = path.relative_to(git_dir).as_posix()
        if path.is_file() and (sha := read_ref(git_dir, ref)) is not None:
            tips[sha] = None
    for line in _packed_refs(git_dir):
        sha, _, ref = line.partition(" ")
        if ref.startswith("refs/heads/") and _SHA1.fullmatch(sha):
            tips[sha] = None
    return list(tips)[:limit]


def write_ref(git_dir: Path, ref: str, sha: str) -> bool:
    """Point `ref` at `sha` as git does for a loose ref: `{ref}.lock` made exclusively, then
    renamed over the ref. False, and nothing changed, when git holds the lock or the name
    cannot be a file here (a directory of refs has the name)."""
    if not is_readable_ref(ref) or not _SHA1.fullmatch(sha):
        return False
    path = git_dir / ref
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{sha}\n")
        os.rename(lock, path)
    except OSError:
        with contextlib.suppress(OSError):
            lock.unlink()
        return False
    return True


def is_readable_ref(ref: str) -> bool:
    """A branch, tag or pull request ref whose name is safe as a path under the repository."""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return is_branch_name(ref.removeprefix(prefix))
    return _PULL_REF.fullmatch(ref) is not None


def tag_refs(git_dir: Path) -> dict[str, str]:
    """The repository's tags, name → object, from `packed-refs` and loose refs (loose ones win,
    as in git)."""
    tags: dict[str, str] = {}
    for line in _packed_refs(git_dir):
        object_id, _, name = line.partition(" ")
        if name.startswith("refs/tags/") and _SHA1.fullmatch(object_id):
            tags[name] = object_id
    loose = git_dir / "refs" / "tags"
    for path in loose.rglob("*") if loose.is_dir() else ():
        name = f"refs/tags/{path.relative_to(loose).as_posix()}"
        if path.is_file() and (named := read_ref(git_dir, name)) is not None:
            tags[name] = named
    return tags


def _packed_refs(git_dir: Path) -> list[str]:
    try:
        return (git_dir / "packed-refs").read_text().splitlines()
    except OSError:
        return []


def _sha_or_none(text: str) -> str | None:
    return text if _SHA1.fullmatch(text) else None


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_PULL_REF = re.compile(r"refs/pull/[0-9]{1,10}/head")
