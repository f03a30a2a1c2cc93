"""The peer: adnanh/webhook (Debian's `webhook` package) running a shell script per delivery.

What a team without a CI daemon does: `webhook` checks the signature (an HMAC-SHA256 trigger rule
on `X-Hub-Signature-256`), answers at once, and runs a script that takes the repository's lock
(`flock`), fetches, checks the commit out and runs `make test`. It persists nothing before it
answers and builds every push, in whatever order the lock is granted.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp
from driver import (
    SECRET,
    free_port,
    make_repository,
    makefile,
    percentile,
    push_bodies,
    rss_mib,
    s1_rows,
    send_all,
    wait_for_lines,
)

WAIT_LIMIT = 120.0
# After S3's last delivery the peer has ~2,000 builds of 0.2 s queued behind its lock: the
# benchmark counts what started in this long, then stops them.
S3_DRAIN_SECONDS = 30.0

HOOK_SCRIPT = """#!/bin/sh
# One build per delivery: lock the repository, fetch, check the commit out, make test.
set -e
repository="$1"
sha="$2"
case "$repository" in
  */*) ;;
  *) exit 2 ;;
esac
work="{work}/$(printf %s "$repository" | tr / _)"
exec 9>"$work.lock"
flock 9
if [ ! -d "$work" ]; then
  git clone --quiet "{remotes}/$repository.git" "$work"
fi
cd "$work"
git fetch --quiet origin
git checkout --quiet --force "$sha"
make test >/dev/null
echo "$sha" >> "{done}"
"""


def ensure_installed() -> str:
    """The `webhook` binary, installed with apt when missing (root only)."""
    found = shutil.which("webhook")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("the peer needs Debian's webhook package: sudo apt-get install webhook")
    subprocess.run(
        ["apt-get", "install", "--yes", "--no-install-recommends", "webhook"],
        check=True,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        capture_output=True,
    )
    installed = shutil.which("webhook")
    if installed is None:
        raise SystemExit("apt-get installed webhook, but it is not on PATH")
    return installed


class WebhookPeer:
    """`webhook` on a loopback port with one hook, `github`, building from `remotes`."""

    def __init__(self, root: Path, remotes: Path) -> None:
        self.root = root
        self.port = free_port()
        self.webhook_urls = [f"http://127.0.0.1:{self.port}/hooks/github"]
        self.done = root / "peer-done"  # a line per build that finished
        work = root / "peer-work"
        work.mkdir(parents=True, exist_ok=True)
        script = root / "peer-build.sh"
        script.write_text(HOOK_SCRIPT.format(work=work, remotes=remotes, done=self.done))
        script.chmod(0o755)
        self.hooks = root / "peer-hooks.json"
        self.hooks.write_text(_hooks_json(script, work))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_webhook(self.hooks, self.port, start_new_session=True)
        # (a session of its own: `stop` ends its scripts too, the whole group)

    def rss_mib(self) -> float:
        assert self.process is not None
        return rss_mib(self.process.pid)

    def stop(self) -> None:
        """webhook and every build it started (they share its process group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def start_webhook(
    hooks: Path, port: int, *, start_new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`webhook` serving `hooks` on 127.0.0.1:`port`, once it accepts connections."""
    process = subprocess.Popen(
        [ensure_installed(), "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=start_new_session,
    )
    wait_listening(port, process, "webhook")
    return process


def wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    """Until 127.0.0.1:`port` accepts a connection (30 s at most, and only while `process`
    runs)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.02)


def hooks_json(command: Path, **hook: object) -> str:
    """webhook's hooks file: one hook, `github`, running `command` for a push whose
    X-Hub-Signature-256 is the driver's HMAC-SHA256 of the payload; `hook`: its other keys."""
    rule = {
        "match": {
            "type": "payload-hmac-sha256",
            "secret": SECRET,
            "parameter": {"source": "header", "name": "X-Hub-Signature-256"},
        }
    }
    return json.dumps([{"id": "github", "execute-command": str(command), **hook,
                        "trigger-rule": rule}], indent=2)  # fmt: skip


def _hooks_json(script: Path, work: Path) -> str:
    arguments = [
        {"source": "payload", "name": "repository.full_name"},
        {"source": "payload", "name": "after"},
    ]
    return hooks_json(
        script, **{"command-working-directory": str(work), "pass-arguments-to-command": arguments}
    )


async def s1(root: Path) -> dict[str, float]:
    """S1 against the peer, with the driver and rows of Hobotnica's S1."""
    remotes, stamps = root / "remotes", root / "stamps"
    shas = make_repository(remotes / "bench", "s1", 1, makefile(stamps))
    peer = WebhookPeer(root, remotes)
    peer.start()
    builds = 0
    try:
        async with aiohttp.ClientSession() as session:

            async def one(body: bytes, *, keep_alive: bool = False) -> tuple[float, float]:
                nonlocal builds
                delivered = await send_all(
                    peer.webhook_urls,
                    [body],
                    1,
                    keep_alive=session if keep_alive else None,
                    accepted=200,
                )
                sent = delivered.sent_at[0]
                builds += 1
                started = await wait_for_lines(stamps, builds, WAIT_LIMIT)
                await wait_for_lines(peer.done, builds, WAIT_LIMIT)  # one push at a time
                return delivered.latencies_ms[0], (float(started[-1].split()[0]) - sent) * 1000

            bodies = list(push_bodies("bench/s1", shas))
            await one(bodies[0])  # the first build clones
            return await s1_rows("bench/s1", remotes / "bench" / "s1.git", bodies[0], one)
    finally:
        peer.stop()


async def s3(root: Path, name: str) -> dict[str, float]:
    """S3 against the peer: 2,000 pushes to one repository, 50 at a time, a new connection
    each; then up to `S3_DRAIN_SECONDS` for the builds."""
    remotes, stamps = root / "remotes", root / "stamps"
    shas = make_repository(remotes / "bench", name, 2000, makefile(stamps, seconds=0.2))
    peer = WebhookPeer(root, remotes)
    peer.start()
    try:
        await asyncio.sleep(1)
        idle = peer.rss_mib()
        bodies = list(push_bodies(f"bench/{name}", shas))
        delivered = await send_all(peer.webhook_urls, bodies, 50, accepted=200)
        newest = delivered.answered_order[-1]  # GitHub's newest: the one answered last
        with contextlib.suppress(TimeoutError):
            await wait_for_lines(peer.done, len(bodies), S3_DRAIN_SECONDS)
        started = stamps.read_text().splitlines() if stamps.exists() else []
        return {
            "intake_per_s": len(bodies) / delivered.took_s,
            "intake_p50_ms": statistics.median(delivered.latencies_ms),
            "intake_p99_ms": percentile(delivered.latencies_ms, 0.99),
            "builds_run": len(started),
            "newest_built": float(any(line.endswith(f" {name} {newest}") for line in started)),
            "rss_idle_mib": idle,
        }
    finally:
        peer.stop()
