"""Blue/green behind real nginx: `hobotnica switch` three times under a stream of pushes.

nginx runs the shipped `nginx/hobotnica.conf` (TLS with a throwaway certificate, ports moved to
loopback), two daemons share one data directory, and a load generator sends signed pushes
through nginx the whole time. Every request must get a 2xx, every delivery must be built
exactly once, and a build running in the old instance at a switch must finish and report.
"""

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import SECRET, TOKEN
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import make_remote, makefile
from tests.support.processes import processes_with_marker
from tests.support.webhooks import headers, push_payload
from tests.test_core_loop import wait_for_file
from tests.test_daemon_process import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOBOTNICA = str(Path(sys.executable).parent / "hobotnica")
SHIPPED_NGINX_CONF = Path(__file__).parent.parent / "nginx" / "hobotnica.conf"
PUSH_INTERVAL = 0.03  # about 30 pushes a second
SWITCHES = 3
SHUTDOWN_GRACE = 3.0
SWITCH_INTERVAL = 4.0

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (.ci/run installs it)"
)


@dataclass
class Site:
    root: Path
    config: Path
    nginx_conf: Path
    url: str


def certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def nginx_conf(root: Path, upstream: Path, https_port: int, http_port: int) -> Path:
    """The shipped server blocks inside a minimal main context, moved to loopback ports."""
    cert, key = certificate(root)
    server = (
        SHIPPED_NGINX_CONF.read_text()
        .replace("/etc/nginx/hobotnica-upstream.conf", str(upstream))
        .replace("listen [::]:80;", "")
        .replace("listen [::]:443 ssl http2;", "")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
        .replace("/etc/ssl/certs/ci.example.com.pem", str(cert))
        .replace("/etc/ssl/private/ci.example.com.key", str(key))
    )
    (root / "hobotnica.conf").write_text(server)
    (root / "logs").mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"pid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n  access_log off;\n  include {root}/hobotnica.conf;\n}}\n"
    )
    return conf


def nginx_workers(conf: Path) -> set[int]:
    """The worker processes of this nginx (children of its master)."""
    master = int((conf.parent / "nginx.pid").read_text())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                found.add(int(entry.name))
    return found


def nginx(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-p", str(conf.parent), "-c", str(conf), *args], capture_output=True, text=True
    )


@pytest.fixture
async def fake_github_process_wide() -> AsyncIterator[FakeGitHub]:
    """The fake GitHub on a real port, for daemons running as processes."""
    fake = FakeGitHub()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def site(tmp_path: Path, fake_github_process_wide: FakeGitHub) -> Any:
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    nginx_root = tmp_path / "nginx"
    nginx_root.mkdir()
    upstream = nginx_root / "upstream.conf"
    https_port, http_port, blue, green = (free_port() for _ in range(4))
    conf = nginx_conf(nginx_root, upstream, https_port, http_port)
    command = json.dumps([NGINX, "-p", str(nginx_root), "-c", str(conf)])
    config = tmp_path / "hobotnica.toml"
    config.write_text(
        f'[server]\nport = {blue}\npublic_url = "https://127.0.0.1:{https_port}"\n'
        f"shutdown_grace = {SHUTDOWN_GRACE}\n"
        f'[github]\napi_url = "{fake_github_process_wide.url}"\n'
        f'git_url = "{remotes.as_uri()}"\nwebhook_secret = "{SECRET}"\ntoken = "{TOKEN}"\n'
        "catch_up = false\nstatuses_per_minute = 100000\n"
        '[storage]\ndata_dir = "var"\n'
        "[builds]\nconcurrency = 2\nkill_grace = 1\n"
        f'[deploy]\nports = [{blue}, {green}]\nmanager = "process"\n'
        f'upstream_file = "{upstream}"\nrun_dir = "run"\nhealth_timeout = 30\n'
        f'nginx_test = {command[:-1]}, "-t"]\nnginx_reload = {command[:-1]}, "-s", "reload"]\n'
        '[[projects]]\nrepository = "octo/app"\n[[projects]]\nrepository = "octo/slow"\n'
    )
    # nginx needs an upstream to start: point it at an instance that is not running yet.
    upstream.write_text(f"upstream hobotnica {{ server 127.0.0.1:{green}; }}\n")
    started = nginx(conf)
    assert started.returncode == 0, started.stderr
    yield Site(tmp_path, config, conf, f"https://127.0.0.1:{https_port}")
    for pid_file in (tmp_path / "run").glob("*.pid"):
        subprocess.run(["kill", "-TERM", pid_file.read_text().strip()], check=False)
    nginx(conf, "-s", "quit")
    deadline = time.monotonic() + 30
    while processes_with_marker(f"https://127.0.0.1:{https_port}/builds/", prefix=True):
        if time.monotonic() > deadline:
            for pid in processes_with_marker(f"https://127.0.0.1:{https_port}/", prefix=True):
                subprocess.run(["kill", "-KILL", str(pid)], check=False)
            break
        time.sleep(0.1)


def switch(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOBOTNICA, "switch", "--config", str(config)], capture_output=True, text=True, timeout=90
    )


def test_the_shipped_nginx_config_passes_nginx_t(site: Site) -> None:
    result = nginx(site.nginx_conf, "-t")
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


async def test_three_switches_under_load_drop_no_webhook(
    site: Site, fake_github_process_wide: FakeGitHub, tmp_path: Path
) -> None:
    fake = fake_github_process_wide
    ran = tmp_path / "ran.txt"
    release = tmp_path / "release"
    app = make_remote(tmp_path / "remotes", "octo/app")
    sha = app.commit({"Makefile": makefile(test=f"@echo $$HOBOTNICA_BUILD_ID >> {ran}")})
    slow_repo = make_remote(tmp_path / "remotes", "octo/slow")
    slow = slow_repo.commit({"Makefile": makefile(test=wait_for_file(release))})

    workers_before = nginx_workers(site.nginx_conf)
    first = await asyncio.to_thread(switch, site.config)  # the first instance comes up
    assert first.returncode == 0, first.stderr

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    answers: list[tuple[int, float, list[int]]] = []
    # A new connection per delivery, as GitHub sends them. (On a reused keep-alive connection a
    # POST can meet nginx's old worker closing it during a reload; no server can prevent that.)
    connector = aiohttp.TCPConnector(ssl=insecure, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def deliver(payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{site.url}/webhooks/github", data=body, headers=headers(body, SECRET)
                ) as response:
                    answer = await response.json() if response.status < 300 else {}
                    status = response.status
            except aiohttp.ClientError as error:  # counted as a failure, with its reason
                status, answer = 0, {"error": repr(error)}
            elapsed = time.perf_counter() - started
            answers.append((status, elapsed, answer.get("builds", [])))

        # `nginx -s reload` returns before nginx has switched: wait until every worker that had
        # the old upstream (where nothing runs in this setup) has exited.
        deadline = time.monotonic() + 30
        while workers_before & nginx_workers(site.nginx_conf):
            assert time.monotonic() < deadline, "nginx's old workers never went away"
            await asyncio.sleep(0.05)
        await deliver(push_payload("octo/slow", slow, branch="slow"))
        assert answers[-1][0] == 202, answers[-1]
        await fake.wait_running(slow)  # it runs in the first instance
        stop = asyncio.Event()

        in_flight: set[asyncio.Task[None]] = set()

        async def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                branch = f"load-{n}"  # one branch each: nothing supersedes anything
                task = asyncio.create_task(deliver(push_payload("octo/app", sha, branch=branch)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await asyncio.sleep(PUSH_INTERVAL)

        generator = asyncio.create_task(load())
        outputs = []
        for _ in range(SWITCHES):
            # Longer than shutdown_grace: switching back needs the drained instance's port.
            await asyncio.sleep(SWITCH_INTERVAL)
            result = await asyncio.to_thread(switch, site.config)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, outputs
            if len(outputs) == 1:
                release.touch()  # the slow build finishes in the draining instance
        await asyncio.sleep(1.0)
        stop.set()
        await generator
        async with asyncio.timeout(30):
            await asyncio.gather(*in_flight)

    failed = [a for a in answers if not 200 <= a[0] < 300]  # status 0: no HTTP answer at all
    longest = max(a[1] for a in answers)
    build_ids = [b for a in answers for b in a[2]]
    print(
        f"\nrequests sent {len(answers)}, failed {len(failed)}, "
        f"longest response {longest * 1000:.0f} ms, switches {SWITCHES}"
    )
    assert failed == [], failed[:5]
    assert len(build_ids) == len(answers)  # one build per delivery

    # Every build finishes exactly once (the slow one reports from the draining instance).
    await fake.wait_final(slow, timeout=60)
    load_ids = sorted(build_ids[1:])
    deadline = time.monotonic() + 90
    while sorted(int(x) for x in ran.read_text().split()) != load_ids if ran.exists() else True:
        assert time.monotonic() < deadline, "not every delivery was built"
        await asyncio.sleep(0.1)
    assert (await fake.wait_final(slow)).state == "success"
    ran_ids = [int(x) for x in ran.read_text().split()]
    assert sorted(ran_ids) == load_ids  # each exactly once
