"""Builds as another user (`builds.user`): what they may touch, and only while they run.

A build that runs as the daemon's own user can read the daemon's environment
(`/proc/<daemon>/environ`: its token and webhook secret), the config file, the database, the
session key and every other repository's workspace. Run as `builds.user` it cannot:

- `make` is started through `setpriv` with that user's ids and groups and no capabilities (the
  daemon's ambient ones, if the unit gives it any, are dropped);
- the data directory, `workspaces/` and `mirrors/` only let others pass through (0711); the
  database, logs and session key are the daemon's alone;
- a repository's workspace belongs to the build user only while its build runs: it is handed
  over after the checkout and taken back once every process of the build has ended, so a build
  never sees another repository's workspace but one that runs at the same time. Handing over
  and back changes only what the other side owns, never a hard link to someone else's file;
- its mirror (whose objects the workspace borrows) opens to the build user's group only while
  the build runs (0750 instead of 0700).

The daemon needs to be root, or to hold CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_FOWNER,
CAP_DAC_READ_SEARCH and CAP_KILL (the shipped systemd unit grants exactly these when set up as
the README says); `check_account` finds out at start.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.setting_checks import BuildUser

PROBE_TIMEOUT = 10.0
PASS_THROUGH = 0o711  # others may traverse, not list
PRIVATE_DIR = 0o700
LENT_MIRROR = 0o750


@dataclass(frozen=True)
class BuildAccount:
    user: BuildUser
    setpriv: str = "setpriv"

    @property
    def daemon_ids(self) -> tuple[int, int]:
        return os.getuid(), os.getgid()

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run as the build user, with no capabilities whatever the daemon holds."""
        user = self.user
        return [
            self.setpriv,
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--init-groups",
            "--inh-caps=-all",
            "--",
            *argv,
        ]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The build's home is the build user's (caches under ~ keep working), not the daemon's."""
        return {**env, "HOME": self.user.home}

    def lend(self, workspace: Path, mirror: Path) -> None:
        """Give the build user its workspace and a way into its mirror (blocking)."""
        uid, _ = self.daemon_ids
        _change_owner(workspace, (uid,), self.user.uid, self.user.gid)
        os.chmod(workspace, PRIVATE_DIR)
        if mirror.is_dir():
            os.chown(mirror, uid, self.user.gid)
            os.chmod(mirror, LENT_MIRROR)

    def take_back(self, workspace: Path, mirror: Path) -> None:
        """Once the build's processes are gone: the workspace and the mirror are the daemon's."""
        uid, gid = self.daemon_ids
        if workspace.is_dir():
            _change_owner(workspace, (self.user.uid,), uid, gid)
            os.chmod(workspace, PRIVATE_DIR)
        if mirror.is_dir():
            os.chmod(mirror, PRIVATE_DIR)
            os.chown(mirror, uid, gid)


def tighten_data_dir(data_dir: Path) -> None:
    """Modes that keep the build user out of what is not its own (see the module's doc)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, PASS_THROUGH)
    for name, mode in (("workspaces", PASS_THROUGH), ("mirrors", PASS_THROUGH)):
        path = data_dir / name
        path.mkdir(exist_ok=True)
        os.chmod(path, mode)
        for owner in path.iterdir():
            if owner.is_dir() and not owner.is_symlink():
                os.chmod(owner, PASS_THROUGH)
                for repository in owner.iterdir():
                    if repository.is_dir() and not repository.is_symlink():
                        os.chmod(repository, PRIVATE_DIR)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    os.chmod(logs, PRIVATE_DIR)
    for name in ("hobotnica.sqlite3", "hobotnica.sqlite3-wal", "hobotnica.sqlite3-shm"):
        if (data_dir / name).exists():
            os.chmod(data_dir / name, 0o600)


def check_account(user: BuildUser, data_dir: Path, config_path: Path | None) -> str | None:
    """Why builds cannot run as `user` here, or None when they can (blocking)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return "setpriv is not installed (Debian: util-linux)"
    if config_path is not None and _readable_by(config_path, user):
        return (
            f"the config file {config_path} is readable by builds.user {user.name}: "
            "make it readable by the daemon only (chmod 640, group of the daemon)"
        )
    probe = BuildAccount(user, setpriv).command(["true"])
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot start a process as {user.name}: {error}"
    if result.returncode != 0:
        return (
            f"cannot start a process as {user.name} (the daemon needs root or CAP_SETUID and "
            f"CAP_SETGID): {result.stderr.strip()[:200]}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".chown-probe.") as file:
            os.chown(file.name, user.uid, user.gid)
            os.chown(file.name, os.getuid(), os.getgid())
    except OSError as error:
        return (
            f"cannot hand a workspace to {user.name} (the daemon needs root or CAP_CHOWN): "
            f"{error.strerror}"
        )
    return None


def _readable_by(path: Path, user: BuildUser) -> bool:
    stat = path.stat()
    if stat.st_uid == user.uid:
        return True
    groups = os.getgrouplist(user.name, user.gid)
    return bool(stat.st_mode & 0o004) or (stat.st_gid in groups and bool(stat.st_mode & 0o040))


def _change_owner(root: Path, only_from: Sequence[int], uid: int, gid: int) -> None:
    """`root` and everything under it owned by a uid in `only_from` → `uid:gid`.

    Never follows a symbolic link, and leaves alone whatever belongs to someone else: a hard
    link a build made to another user's file keeps its owner.
    """
    _change_one(str(root), only_from, uid, gid)
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        for name in (*subdirectories, *files):
            _change_one(os.path.join(directory, name), only_from, uid, gid)


def _change_one(path: str, only_from: Sequence[int], uid: int, gid: int) -> None:
    try:
        if os.lstat(path).st_uid in only_from:
            os.lchown(path, uid, gid)
    except FileNotFoundError:
        pass
