"""The daemon as a user runs it: the `hobotnica` console script in its own process.

`hobotnica serve` on the example config's development secret, `hobotnica try` on a local
repository, the build page, and SIGTERM ending the process cleanly with exit status 0.
"""

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.core.settings import DEVELOPMENT_WEBHOOK_SECRET as DEVELOPMENT_SECRET
from tests.support.gitrepo import git, make_remote, makefile
from tests.support.processes import processes_with_marker
from tests.support.webhooks import headers, push_payload

HOBOTNICA = str(Path(sys.executable).parent / "hobotnica")
EXAMPLE_CONFIG = Path(__file__).parent.parent / "config" / "hobotnica.example.toml"
STARTUP_TIMEOUT = 30.0
# The daemons this module started: clean-up ends their builds' leftovers and nobody else's
# (not a `make run` daemon's, not another test run's).
STARTED: list[str] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return copy_example_config(tmp_path)


def copy_example_config(tmp_path: Path) -> Path:
    """The example config, moved to a free port and a private data directory."""
    port = free_port()
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace("8081", str(port)).replace('data_dir = "../var"', 'data_dir = "var"')
    path = tmp_path / "hobotnica.toml"
    path.write_text(text)
    return path


def start_daemon(
    config: Path,
    home: Path,
    extra_env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra_env or {})
    process = subprocess.Popen(
        [HOBOTNICA, "serve", "--config", str(config), *(args or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    port = next(line for line in config.read_text().splitlines() if line.startswith("port"))
    base = f"http://127.0.0.1:{port.split('=')[1].strip()}"
    STARTED.append(base)  # its public URL too: the example config's is http://127.0.0.1:PORT
    wait_healthy(base, process)
    return process, base


@pytest.fixture
def serving(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, base = start_daemon(config, tmp_path)
    yield process, base
    if process.poll() is None:
        process.kill()
        process.wait()


def wait_healthy(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("daemon did not become healthy")


def test_try_builds_a_local_repository_and_sigterm_stops_cleanly(
    serving: tuple[subprocess.Popen[str], str], config: Path, tmp_path: Path
) -> None:
    process, base = serving
    project = tmp_path / "my project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "Makefile").write_text(makefile(test="@echo tests pass on $$HOBOTNICA_BRANCH"))
    git(project, "add", "Makefile")
    git(project, "commit", "-q", "-m", "Add a Makefile")

    result = subprocess.run(
        [HOBOTNICA, "try", str(project), "--config", str(config), "--wait"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    page_url, outcome = result.stdout.strip().splitlines()
    assert page_url == f"{base}/builds/1"
    assert outcome.startswith("success: make test passed")
    # Pages need a sign-in; the example config's development user (`dev`, password `dev`) works.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(page_url, timeout=5)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Basic")
    with urllib.request.urlopen(as_dev_user(page_url), timeout=30) as response:
        page = response.read().decode()
    assert "local/my-project" in page and "tests pass on main" in page
    with urllib.request.urlopen(as_dev_user(f"{base}/api/builds/1"), timeout=30) as response:
        assert json.load(response)["message"] == "Add a Makefile"

    # With --deploy, --wait waits for the deploy the green tests queued, and prints it too.
    recipe = makefile(test="@echo tests pass", deploy="@echo deployed $$HOBOTNICA_SHA")
    (project / "Makefile").write_text(recipe)
    git(project, "commit", "-q", "-am", "Deploy too")
    deployed = subprocess.run(
        [HOBOTNICA, "try", str(project), "--config", str(config), "--deploy", "--wait"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    test_url, test_outcome, deploy_url, deploy_outcome = deployed.stdout.strip().splitlines()
    assert test_url == f"{base}/builds/2" and test_outcome.startswith("success: make test")
    assert deploy_url == f"{base}/builds/3"
    assert deploy_outcome.startswith("success: make deploy passed")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in process.stdout or [] if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert any("DEVELOPMENT WEBHOOK SECRET" in event for event in events)
    assert any("not posted" in event for event in events)  # no token: statuses are logged
    [listening] = [line for line in lines if line["event"] == "hobotnica is listening"]
    assert listening["event_loop"] == "uvloop"  # the default
    assert events[-1] == "stopped"
    statuses = [line for line in lines if line["event"] == "status (not posted to GitHub)"]
    states = [s["state"] for s in statuses]
    assert states.count("success") == 3 and set(states) <= {"pending", "success"}  # 3 builds


def as_dev_user(url: str) -> urllib.request.Request:
    credentials = base64.b64encode(b"dev:dev").decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {credentials}"})


def make_processes(build_url: str) -> list[int]:
    found = []
    for pid in processes_with_marker(build_url):
        with contextlib.suppress(OSError):  # it may end while we look
            if Path(f"/proc/{pid}/comm").read_text().strip() == "make":
                found.append(pid)
    return found


@pytest.fixture(autouse=True)
def no_orphans_left() -> Iterator[None]:
    """Whatever a failing test leaves running is ended, so it cannot disturb later tests."""
    yield
    for base in STARTED:
        for pid in processes_with_marker(f"{base}/builds/", prefix=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(as_dev_user(url), timeout=30) as response:
        return json.load(response)


def test_the_daemon_runs_on_asyncio_when_told_to(config: Path, tmp_path: Path) -> None:
    text = config.read_text()
    assert 'event_loop = "uvloop"' in text
    config.write_text(text.replace('event_loop = "uvloop"', 'event_loop = "asyncio"'))
    process, base = start_daemon(config, tmp_path)
    body = json.dumps(push_payload("octo/unknown", "a" * 40)).encode()
    request = urllib.request.Request(
        f"{base}/webhooks/github", data=body, headers=headers(body, DEVELOPMENT_SECRET)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["ignored"]  # a repository it does not build
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in process.stdout or [] if line.startswith("{")]
    [listening] = [line for line in lines if line["event"] == "hobotnica is listening"]
    assert listening["event_loop"] == "asyncio"


def test_a_build_interrupted_by_sigkill_reruns_once_after_restart(
    config: Path, tmp_path: Path
) -> None:
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    remote = make_remote(remotes, "octo/app")
    release = tmp_path / "release"
    sha = remote.commit(
        {
            "Makefile": makefile(
                test=f"@echo started\n@while [ ! -e {release} ]; do sleep 0.02; done"
            )
        }
    )
    text = config.read_text().replace(
        'git_url = "https://github.com"', f'git_url = "{remotes.as_uri()}"'
    )
    config.write_text(text + '\n[[projects]]\nrepository = "octo/app"\n')
    public_url = next(
        line.split('"')[1] for line in text.splitlines() if line.startswith("public_url")
    )
    process, base = start_daemon(config, tmp_path)
    try:
        body = json.dumps(push_payload("octo/app", sha, branch="feature")).encode()
        request = urllib.request.Request(
            f"{base}/webhooks/github", data=body, headers=headers(body, DEVELOPMENT_SECRET)
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["builds"] == [1]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while get_json(f"{base}/api/builds/1")["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # `make` itself: it waits on the recipe, so it lives as long as the build does.
        while not (orphans := make_processes(f"{public_url}/builds/1")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()

    assert all(Path(f"/proc/{pid}").exists() for pid in orphans)  # make outlived the daemon
    process, base = start_daemon(config, tmp_path)
    try:
        # Recovery ran before /health turned 200: the orphans are gone, the build re-queued.
        assert not any(pid in processes_with_marker(f"{public_url}/builds/1") for pid in orphans)
        release.touch()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (build := get_json(f"{base}/api/builds/1"))["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert (build["state"], build["attempt"]) == ("success", 2)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
