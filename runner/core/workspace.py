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
import functools
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from runner.core.git_files import tag_refs

log = structlog.get_logger(logger_name="hobotnica.build")

# Under `workspaces/`, beside the owners' folders (a GitHub owner's name never starts with ".").
TRASH = ".trash"
ABANDONED_AFTER = 600.0  # seconds: emptying a workspace takes a few renames


class Trash:
    """Emptied workspaces, removed one at a time by a thread of their own (a large tree takes a
    while, and the daemon's other threads have builds to start). A folder older than
    ABANDONED_AFTER that nobody here is removing was left by a daemon that stopped (a younger
    one may still be being filled, by this daemon or its blue/green twin): it goes too."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hobotnica-trash")
        self._removing: dict[Path, asyncio.Future[None]] = {}

    def remove_later(self, moved: Path | None) -> None:
        for path in ([moved] if moved else []) + self._abandoned():
            if path not in self._removing:
                loop = asyncio.get_running_loop()
                removal = self._removing[path] = loop.run_in_executor(
                    self._executor, remove_for_good, path
                )
                removal.add_done_callback(functools.partial(self._removed, path))

    def _removed(self, path: Path, _removal: "asyncio.Future[None]") -> None:
        self._removing.pop(path, None)

    async def close(self) -> None:
        """At shutdown: the removals under way end before the daemon exits."""
        if self._removing:
            await asyncio.wait(list(self._removing.values()))
        self._executor.shutdown(wait=False)

    def _abandoned(self) -> list[Path]:
        now = time.time()
        try:
            with os.scandir(self.folder) as entries:
                return [
                    Path(entry.path)
                    for entry in entries
                    if now - entry.stat(follow_symlinks=False).st_mtime > ABANDONED_AFTER
                ]
        except OSError:
            return []


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
    tags = "".join(f"{o} {r}\n" for r, o in sorted(tag_refs(mirror).items()))
    (workspace / ".git" / "packed-refs").write_text(tags)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def remove_for_good(path: Path) -> None:
    """Remove `path`, opening up first what a build closed (a folder without write or search
    permission stops a daemon that is not root); what still cannot go is logged."""
    try:
        remove(path)
    except OSError:
        _open_up(path)
        try:
            remove(path)
        except OSError as error:
            log.warning("cannot remove what a build left", path=str(path), error=str(error))


def _open_up(path: Path) -> None:
    """Every folder under `path` readable, writable and searchable by its owner (the daemon, once
    the build user's files are taken back), top down; symlinks are never followed."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for root, folders, _ in os.walk(path):
        for name in folders:
            folder = os.path.join(root, name)
            if not os.path.islink(folder):
                with contextlib.suppress(OSError):
                    os.chmod(folder, 0o700)


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
