"""A build's workspace: a working copy at exactly the build's commit, and nothing else.

A build can write anything into its workspace, including `.git/config` (where `core.fsmonitor`
would make the daemon's next `git` run a command) and `.git/hooks`. So before each checkout
everything in the workspace, its `.git` too, is moved out (one rename per entry, where
`git clean` walked the whole tree on the build's way to make) into a folder of `.trash` that is
removed off that way (`Trash`), and a fresh `.git` is written that borrows the mirror's objects
(`objects/info/alternates`). The daemon never runs git against a `.git` a build could have
touched.
"""

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

# Under `workspaces/`, beside the owners' folders (a GitHub owner's name never starts with ".").
TRASH = ".trash"


class Trash:
    """Emptied workspaces, removed in the background. What a stopped daemon left there goes
    with this daemon's first removal."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._removals: set[asyncio.Task[None]] = set()
        self._checked = False

    def remove_later(self, *paths: Path | None) -> None:
        if not self._checked:
            self._checked = True
            if self.folder.is_dir():
                paths += tuple(self.folder / name for name in os.listdir(self.folder))
        for path in set(paths):
            if path is not None:
                task = asyncio.create_task(asyncio.to_thread(_remove_quietly, path))
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)

    async def close(self) -> None:
        """At shutdown: the removals under way end before the daemon exits."""
        if self._removals:
            await asyncio.wait(self._removals)


def clear_workspace(workspace: Path, mirror: Path, sha: str, trash: Path) -> Path | None:
    """Move everything out of the workspace (what the last build left, its `.git` too) into a
    new folder of `trash`, and write the new `.git`; returns that folder, for removal (None if
    the workspace was empty)."""
    workspace.mkdir(parents=True, exist_ok=True)
    entries = os.listdir(workspace)
    moved = None
    if entries:
        trash.mkdir(mode=0o700, exist_ok=True)
        moved = Path(tempfile.mkdtemp(dir=trash, prefix=f"{workspace.name}."))
        for name in entries:
            os.rename(workspace / name, moved / name)
    _fresh_git_dir(workspace, mirror, sha)
    return moved


def copy_tags(workspace: Path, mirror: Path) -> None:
    """The mirror's tags into the workspace (`git describe`), as they are after the fetch."""
    tags = "".join(f"{o} {r}\n" for r, o in _tags(mirror))
    (workspace / ".git" / "packed-refs").write_text(tags)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        remove(path)


def _fresh_git_dir(workspace: Path, mirror: Path, sha: str) -> None:
    """Write the workspace's `.git` (the workspace is empty): it borrows the mirror's objects
    (and its tags, `copy_tags`, once fetched).

    Written by hand rather than with `git init` plus `git for-each-ref`: two processes fewer on
    every build's way to `make`, and nothing of an old `.git` (hooks, config) survives.
    """
    git_dir = workspace / ".git"
    (git_dir / "objects" / "info").mkdir(parents=True)
    (git_dir / "refs" / "heads").mkdir(parents=True)
    (git_dir / "refs" / "tags").mkdir()
    (git_dir / "HEAD").write_text(f"{sha}\n")
    (git_dir / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
    )
    (git_dir / "objects" / "info" / "alternates").write_text(f"{mirror / 'objects'}\n")


def _tags(mirror: Path) -> list[tuple[str, str]]:
    """The mirror's tags, from its packed-refs and loose refs (loose ones win, as in git)."""
    tags: dict[str, str] = {}
    try:
        for line in (mirror / "packed-refs").read_text().splitlines():
            object_id, _, name = line.partition(" ")
            if name.startswith("refs/tags/") and len(object_id) == 40:
                tags[name] = object_id
    except FileNotFoundError:
        pass
    loose = mirror / "refs" / "tags"
    for path in loose.rglob("*") if loose.is_dir() else ():
        if path.is_file():
            tags[f"refs/tags/{path.relative_to(loose).as_posix()}"] = path.read_text().strip()
    return sorted(tags.items())
