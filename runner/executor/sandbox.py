"""Where `make` runs: a plain process group, or a bubblewrap sandbox.

With `builds.sandbox = "bubblewrap"` a build gets a PID namespace of its own (when its init ends,
the kernel ends everything left in it), the whole system read-only, its workspace and a private
/tmp writable, and the daemon's data directory (the database, logs, other repositories'
workspaces and mirrors) and the config file invisible. Its own mirror's objects are visible
read-only: the workspace borrows them through `objects/info/alternates`. The sandbox dies with
the daemon (`--die-with-parent`). Networking is left alone: builds fetch dependencies.
"""

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.settings import Settings

PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Sandbox:
    """Wraps a command line; the plain sandbox returns it unchanged."""

    def command(self, argv: Sequence[str], *, workspace: Path, mirror_objects: Path) -> list[str]:
        return list(argv)


@dataclass(frozen=True)
class Bubblewrap(Sandbox):
    data_dir: Path
    hidden_files: tuple[Path, ...] = ()

    def command(self, argv: Sequence[str], *, workspace: Path, mirror_objects: Path) -> list[str]:
        wrapped = [
            "bwrap",
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",  # noqa: S108 - a private, empty /tmp for the build
            "--tmpfs", "/var/tmp",  # noqa: S108
            "--tmpfs", str(self.data_dir),
            "--ro-bind", str(mirror_objects), str(mirror_objects),
            "--bind", str(workspace), str(workspace),
        ]  # fmt: skip
        for hidden in self.hidden_files:
            wrapped += ["--ro-bind", "/dev/null", str(hidden)]
        return [*wrapped, "--chdir", str(workspace), "--", *argv]


def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot run sandboxes here, or None when it can."""
    probe = ["bwrap", "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/"]
    probe += ["--dev", "/dev", "--proc", "/proc", "--", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except FileNotFoundError:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    except subprocess.TimeoutExpired:
        return "bwrap did not answer in time"
    if result.returncode != 0:
        return f"bwrap cannot create a sandbox here: {result.stderr.strip()[:300]}"
    return None


def sandbox_for(settings: Settings) -> Sandbox:
    """The sandbox `builds.sandbox` names; bubblewrap hides the daemon's own files."""
    if settings.builds.sandbox == "bubblewrap":
        daemon_files = (settings.config_path, settings.github.private_key_file)
        hidden = tuple(path.resolve() for path in daemon_files if path is not None)
        return Bubblewrap(data_dir=settings.data_dir, hidden_files=hidden)
    return Sandbox()
