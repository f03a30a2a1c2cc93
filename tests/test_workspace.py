"""A build's workspace holds exactly its commit: whatever the last build left (files, folders it
locked itself out of, a `.git` it rewrote) is moved out before the checkout and removed
afterwards, off the build's way (`runner.core.git.Repositories.checkout`)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from runner.core.git import Repositories
from runner.core.models import BuildRequest
from runner.core.workspace import TRASH, remove_for_good
from tests.support.gitrepo import Remote, git
from tests.support.privileges import require_root

ENV = {"PATH": os.defpath, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def request_for(sha: str) -> BuildRequest:
    return BuildRequest(repository="octo/app", sha=sha, ref="refs/heads/main", branch="main")


def files_in(workspace: Path) -> set[str]:
    return {
        path.relative_to(workspace).as_posix()
        for path in workspace.rglob("*")
        if ".git" not in path.relative_to(workspace).parts and not path.is_dir()
    }


async def test_nothing_the_last_build_left_survives_into_the_next(
    remote: Remote, tmp_path: Path
) -> None:
    first = remote.commit({"Makefile": "test:\n", "src/a.c": "int a;\n", ".gitignore": "out/\n"})
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    workspace = await repositories.checkout(request_for(first), clone_url)
    # What a build may leave: output, ignored or not, a changed tracked file, a folder it
    # cannot be walked into, and a `.git/config` that would run a command on git's next start.
    (workspace / "out").mkdir()
    (workspace / "out" / "a.o").write_text("object")
    (workspace / "notes.txt").write_text("untracked")
    (workspace / "src" / "a.c").write_text("tampered")
    (workspace / "locked").mkdir()
    (workspace / "locked" / "inside").write_text("x")
    (workspace / "locked").chmod(0)
    ran = tmp_path / "fsmonitor-ran"
    with (workspace / ".git" / "config").open("a") as config:
        config.write(f"[core]\n\tfsmonitor = touch {ran}\n")
    second = remote.commit({"src/b.c": "int b;\n"})

    assert await repositories.checkout(request_for(second), clone_url) == workspace

    assert files_in(workspace) == {"Makefile", ".gitignore", "src/a.c", "src/b.c"}
    assert (workspace / "src" / "a.c").read_text() == "int a;\n"
    assert git(workspace, "rev-parse", "HEAD") == second
    assert git(workspace, "status", "--porcelain") == ""
    await repositories.close()
    assert not ran.exists()
    assert os.listdir(tmp_path / "data" / "workspaces" / TRASH) == []  # removed afterwards


async def test_what_a_stopped_daemon_left_is_removed_but_not_what_is_being_filled(
    remote: Remote, tmp_path: Path
) -> None:
    sha = remote.commit({"Makefile": "test:\n"})
    trash = tmp_path / "data" / "workspaces" / TRASH
    left = trash / "app.abc123"  # by a daemon that stopped an hour ago
    (left / "big").mkdir(parents=True)
    (left / "big" / "file").write_bytes(b"x" * 4096)
    an_hour_ago = time.time() - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    filling = trash / "lib.def456"  # by the blue/green twin, emptying a workspace right now
    filling.mkdir()
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)

    await repositories.checkout(request_for(sha), f"file://{remote.bare}")
    await repositories.close()

    assert not left.exists()
    assert filling.exists()


def test_folders_a_build_closed_are_removed_by_a_daemon_that_is_not_root() -> None:
    """A build may leave folders without write or search permission (`chmod -R a-w`, Go's module
    cache); `git clean` or `rm -r` as their owner stops there, and the trash would fill the disk."""
    require_root("removes files as another user")
    # Where an ordinary user can get to (pytest's folders are root's own).
    base = Path(tempfile.mkdtemp(prefix="hobotnica-trash-test-"))
    moved = base / "trash" / "app.1"
    (moved / "cache" / "deep").mkdir(parents=True)
    (moved / "cache" / "deep" / "file").write_text("x")
    (moved / "cache" / "link").symlink_to("/usr")  # never followed, never changed
    usr_mode = os.stat("/usr").st_mode
    (moved / "cache" / "deep").chmod(0o500)
    (moved / "cache").chmod(0)
    nobody = pwd.getpwnam("nobody")
    subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(base)], check=True)
    child = os.fork()
    if child == 0:  # the daemon as an ordinary user that owns what the build left
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            remove_for_good(moved)
        finally:
            os._exit(0)
    os.waitpid(child, 0)

    try:
        assert not moved.exists()
        assert os.stat("/usr").st_mode == usr_mode
    finally:
        shutil.rmtree(base)


async def test_a_tag_fetched_with_the_commit_is_in_the_workspace(
    remote: Remote, tmp_path: Path
) -> None:
    """The workspace's tags are the mirror's after the fetch, though its `.git` is written
    while the fetch runs."""
    remote.commit({"Makefile": "test:\n"})
    repositories = Repositories(tmp_path / "data", inherited_env=ENV)
    clone_url = f"file://{remote.bare}"
    await repositories.clone("octo/app", clone_url, None)
    tagged = remote.commit({"a": "1"})
    git(remote.work, "tag", "-a", "-m", "release", "v1.0", tagged)
    git(remote.work, "push", "-q", "origin", "v1.0")
    request = BuildRequest(repository="octo/app", sha=tagged, ref="refs/tags/v1.0", branch="v1.0")

    workspace = await repositories.checkout(request, clone_url)

    assert git(workspace, "describe", "--tags") == "v1.0"
    await repositories.close()
