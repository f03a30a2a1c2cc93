"""The systemd side of deployment: the unit file verifies, and the daemon speaks Type=notify."""

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
    # The shipped unit runs /opt/hobotnica; verify it against this checkout's console script.
    unit = tmp_path / "hobotnica@8081.service"
    unit.write_text(UNIT.read_text().replace("/opt/hobotnica/.venv/bin/hobotnica", HOBOTNICA))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
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
