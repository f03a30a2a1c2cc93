"""The systemd side of deployment: the unit file verifies, and the daemon speaks Type=notify."""

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.test_daemon_process import HOBOTNICA, start_daemon
from tests.test_daemon_process import config as config  # the fixture: example config on a free port

UNIT = Path(__file__).parent.parent / "systemd" / "hobotnica@.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The shipped unit runs /opt/hobotnica; verify it against this checkout's console script,
    # with every shipped drop-in (builds as another user, several nodes) applied.
    unit = tmp_path / "hobotnica@8081.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/hobotnica/current/.venv/bin/hobotnica", HOBOTNICA)
    )
    drop_ins = tmp_path / "hobotnica@8081.service.d"
    shutil.copytree(UNIT.with_name("hobotnica@.service.d"), drop_ins)
    assert sorted(path.name for path in drop_ins.iterdir()) == [
        "build-user.conf",
        "several-nodes.conf",
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},  # where the drop-ins are found
    )
    assert result.returncode == 0, result.stderr
    assert "hobotnica" not in result.stderr  # no complaint about our unit


def test_the_unit_lets_a_draining_instance_finish() -> None:
    text = UNIT.read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["KillMode"] == "mixed"  # SIGTERM to the daemon only; builds finish
    assert int(settings["TimeoutStopSec"]) > 1800  # above builds.drain_timeout's default
    assert "--port %i" in settings["ExecStart"]


def test_serve_tells_systemd_when_ready_and_when_draining(config: Path, tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(address))
        notify.settimeout(30)
        process, _ = start_daemon(config, tmp_path, extra_env={"NOTIFY_SOCKET": str(address)})
        try:
            ready = notify.recv(4096).decode()
            process.send_signal(signal.SIGTERM)
            stopping = notify.recv(4096).decode()
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "READY=1" in ready.splitlines()
    assert f"MAINPID={process.pid}" in ready.splitlines()
    assert "STOPPING=1" in stopping.splitlines()


UPGRADE = Path(__file__).parent.parent / "systemd" / "upgrade.sh"


@pytest.mark.parametrize("argument", ["", "main", "HEAD", "$(id)", "A" * 40, "a" * 39])
def test_the_upgrade_script_installs_nothing_but_a_full_sha(argument: str, tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(UPGRADE), argument],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOBOTNICA_PREFIX": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 2
    assert "usage: upgrade.sh SHA" in result.stderr
    assert list(tmp_path.iterdir()) == []  # touched nothing


def test_the_upgrade_script_refuses_a_commit_off_the_deploy_branch(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
    commit = ["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=a@a", "commit"]
    subprocess.run([*commit, "-q", "--allow-empty", "-m", "on main"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    subprocess.run(["git", "-C", str(work), "checkout", "-q", "-b", "pr"], check=True)
    subprocess.run([*commit, "-q", "--allow-empty", "-m", "a pull request"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:pr"], check=True)
    pr_sha = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    prefix = tmp_path / "opt"
    subprocess.run(["git", "clone", "-q", str(origin), str(prefix / "repo")], check=True)

    result = subprocess.run(
        ["bash", str(UPGRADE), pr_sha],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOBOTNICA_PREFIX": str(prefix)},
        timeout=60,
    )

    assert result.returncode == 1
    assert "is not on origin/main" in result.stderr
    assert not (prefix / "releases").exists() and not (prefix / "current").exists()
