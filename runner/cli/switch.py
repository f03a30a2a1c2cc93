"""`hobotnica switch`: a blue/green upgrade that drops no webhook.

1. Find the active port in nginx's upstream include file (`deploy.upstream_file`).
2. Wait until the other port is free (its last instance may still be draining), then start the
   other instance (`deploy.ports`), as `hobotnica@PORT` under systemd or as a plain
   process (`deploy.manager = "process"`, pid file and log under `deploy.run_dir`).
3. Wait until its `/health` answers 200 (`deploy.health_timeout`); if it does not, stop it and
   leave nginx untouched.
4. Rewrite the upstream file atomically, run `deploy.nginx_test`, then `deploy.nginx_reload`;
   if either fails, put the old file back and stop the new instance.
5. Stop the old instance. It drains: its running builds finish and report while the new one
   already takes webhooks (both share the store, see runner.store.sqlite).

A plain synchronous command: it talks to systemd, nginx and the daemons and then exits.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from runner.core.settings import DeploySettings, Settings

POLL_SECONDS = 0.2
_SERVER_LINE = re.compile(r"server\s+127\.0\.0\.1:(\d+)")


class InstanceManager(Protocol):
    def start(self, port: int) -> None: ...

    def stop(self, port: int) -> None: ...


class Systemd:
    """`hobotnica@PORT` template units (systemd/hobotnica@.service)."""

    def start(self, port: int) -> None:
        _run(["systemctl", "start", f"hobotnica@{port}.service"])

    def stop(self, port: int) -> None:
        # --no-block: the old instance drains for up to builds.drain_timeout; do not wait here.
        _run(["systemctl", "stop", "--no-block", f"hobotnica@{port}.service"])


class Processes:
    """Plain processes for machines without systemd, and for tests."""

    def __init__(self, config_path: Path, run_dir: Path) -> None:
        self._config_path = config_path
        self._run_dir = run_dir

    def _pid_file(self, port: int) -> Path:
        return self._run_dir / f"hobotnica-{port}.pid"

    def start(self, port: int) -> None:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        self.stop(port)  # a leftover from an interrupted switch
        hobotnica = str(Path(sys.executable).parent / "hobotnica")
        with (self._run_dir / f"hobotnica-{port}.log").open("ab") as log:
            process = subprocess.Popen(
                [hobotnica, "serve", "--config", str(self._config_path), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command
            )
        self._pid_file(port).write_text(f"{process.pid}\n")

    def stop(self, port: int) -> None:
        pid_file = self._pid_file(port)
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            command = b""
        if b"hobotnica" in command:  # not a stranger that inherited a stale pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # it drains, then exits by itself
        pid_file.unlink(missing_ok=True)


def active_port(upstream_file: Path) -> int | None:
    try:
        match = _SERVER_LINE.search(upstream_file.read_text())
    except FileNotFoundError:
        return None
    return int(match.group(1)) if match else None


def upstream_config(port: int) -> str:
    return (
        "# Written by `hobotnica switch`: the instance nginx sends traffic to.\n"
        "upstream hobotnica {\n"
        f"    server 127.0.0.1:{port};\n"
        "    keepalive 16;\n"
        "}\n"
    )


def switch(settings: Settings) -> int:
    deploy = settings.deploy
    assert settings.config_path is not None
    manager: InstanceManager = (
        Systemd()
        if deploy.manager == "systemd"
        else Processes(settings.config_path.resolve(), deploy.run_dir)
    )
    active = active_port(deploy.upstream_file)
    target = deploy.ports[1] if active == deploy.ports[0] else deploy.ports[0]
    print(f"active: {active or 'none'}; starting the instance on port {target}")
    if not _wait_port_free(target, deploy.health_timeout):
        print(
            f"hobotnica switch: port {target} is still taken (an instance still draining from "
            "the last switch?); nothing changed, try again when it has exited",
            file=sys.stderr,
        )
        return 1
    manager.start(target)
    if not _wait_healthy(target, deploy):
        manager.stop(target)
        print(
            f"hobotnica switch: port {target} was not healthy in time; nginx untouched",
            file=sys.stderr,
        )
        return 1
    previous = deploy.upstream_file.read_text() if deploy.upstream_file.exists() else None
    _write_atomically(deploy.upstream_file, upstream_config(target))
    for command in (deploy.nginx_test, deploy.nginx_reload):
        result = _run(list(command), check=False)
        if result.returncode != 0:
            _restore(deploy.upstream_file, previous)
            manager.stop(target)
            print(
                f"hobotnica switch: {' '.join(command)} failed, switch undone:\n"
                f"{result.stderr.strip()}",
                file=sys.stderr,
            )
            return 1
    if active is not None and active != target:
        manager.stop(active)
        print(f"switched to port {target}; port {active} is draining")
    else:
        print(f"started on port {target}")
    return 0


def _wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


def _wait_healthy(port: int, deploy: DeploySettings) -> bool:
    deadline = time.monotonic() + deploy.health_timeout
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_SECONDS)
    return False


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _restore(path: Path, previous: str | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write_atomically(path, previous)


def _run(command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check)
