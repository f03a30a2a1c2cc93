"""What `hobotnica serve` logs, as an operator reads it: a real daemon on the example config.

JSON lines when stdout is not a terminal (systemd), readable console lines when asked
(`--log-format console`); one `request` line per HTTP request (aiohttp's access log, through
structlog, without query strings), one `delivery` line per webhook and no `request` line for
it, and one `build finished` line per build with its durations and push → start.
"""

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import git, makefile
from tests.test_daemon_process import HOBOTNICA, as_dev_user, copy_example_config, start_daemon

QUERY_SECRET = "query-token-0123456789"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return copy_example_config(tmp_path)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(as_dev_user(url), timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    return process.stdout.read()


def a_local_build(config: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "Makefile").write_text(makefile(test="@echo fine"))
    git(project, "add", "Makefile")
    git(project, "commit", "-q", "-m", "Add a Makefile")
    result = subprocess.run(
        [HOBOTNICA, "try", str(project), "--config", str(config), "--wait"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_json_lines_with_one_line_per_request_delivery_and_build(
    config: Path, tmp_path: Path
) -> None:
    # A named node (several nodes log to one place) says its name on every line.
    text = config.read_text()
    config.write_text(text.replace("[server]\n", '[server]\nnode_name = "build-3"\n', 1))
    process, base = start_daemon(config, tmp_path)
    try:
        a_local_build(config, tmp_path)
        assert get(f"{base}/builds/1?token={QUERY_SECRET}") == 200
        assert get(f"{base}/builds/999") == 404
    finally:
        output = stop(process)

    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert {line.get("node") for line in lines} == {"build-3"}
    requests = [line for line in lines if line["event"] == "request"]
    page = next(line for line in requests if line["path"] == "/builds/1")
    assert (page["method"], page["status"], page["client"]) == ("GET", 200, "127.0.0.1")
    assert page["duration_ms"] >= 0 and page["logger"] == "hobotnica.access"
    assert any(line["path"] == "/builds/999" and line["status"] == 404 for line in requests)
    assert QUERY_SECRET not in output
    # The webhook `hobotnica try` sent: its own canonical line, and no access line beside it.
    deliveries = [line for line in lines if line["event"] == "delivery"]
    assert len(deliveries) == 1 and deliveries[0]["outcome"] == "accepted"
    assert not any(line["path"].startswith("/webhooks/") for line in requests)
    (finished,) = [line for line in lines if line["event"] == "build finished"]
    expected: dict[str, Any] = {"build_id": 1, "repository": "local/project", "job": "test"}
    assert {key: finished[key] for key in expected} == expected
    assert finished["state"] == "success" and len(finished["sha"]) == 40
    for duration in ("duration_s", "queue_wait_s", "push_to_start_s"):
        assert finished[duration] >= 0, duration


def test_console_rendering_on_request(config: Path, tmp_path: Path) -> None:
    process, base = start_daemon(config, tmp_path, args=["--log-format", "console"])
    try:
        assert get(f"{base}/builds/999") == 404
    finally:
        output = stop(process)

    assert not any(line.startswith("{") for line in output.splitlines())
    request = next(line for line in output.splitlines() if "request" in line and "999" in line)
    assert "method=GET" in request and "status=404" in request and "path=/builds/999" in request
