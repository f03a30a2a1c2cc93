"""Push → `make` start latency, intake latency and idle memory of a real `hobotnica serve`.

Bounded and loopback-only: one local bare repository, one daemon process on 127.0.0.1, 20 pushes
sent one at a time. The Makefile's `test` target prints the wall-clock time it starts into its
log; the latency is that minus the moment the webhook was sent. The cases:

- warm: the pushed commit is already in the daemon's git mirror (a re-push, or a pull request
  for a commit pushed before) — checkout and make only;
- new commit: a fresh commit each time, so the daemon fetches it into its warm mirror first;
- bubblewrap: the warm case again, with `builds.sandbox = "bubblewrap"` (when bwrap works here),
  which shows what the sandbox adds to a trivial build.

Usage: `make bench` or `.venv/bin/python bench/push_to_start.py [--json FILE]`.
"""

import argparse
import hashlib
import hmac
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

PUSHES = 20
BUILD_TIMEOUT = 30.0
SECRET = "bench-secret-0123456789"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)
    return out.stdout.decode().strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Bench:
    def __init__(self, root: Path, sandbox: str = "none") -> None:
        self.sandbox = sandbox
        self.root = root
        self.remote = root / "remotes" / "bench" / "app.git"
        self.work = root / "work"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def setup(self) -> None:
        self.remote.parent.mkdir(parents=True)
        git(self.root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        git(self.root, "clone", "-q", str(self.remote), str(self.work))
        # The start time goes to the build log: a sandboxed build cannot write outside.
        (self.work / "Makefile").write_text("test:\n\t@echo make-started-at $$(date +%s.%N)\n")
        config = self.root / "hobotnica.toml"
        config.write_text(
            f'[server]\nport = {self.port}\npublic_url = "{self.base}"\n'
            f'[github]\ngit_url = "{(self.root / "remotes").as_uri()}"\n'
            f'webhook_secret = "{SECRET}"\n'
            '[storage]\ndata_dir = "var"\n'
            f'[builds]\nsandbox = "{self.sandbox}"\n'
            '[[projects]]\nrepository = "bench/app"\n'
        )
        self.config = config

    def commit(self, n: int) -> str:
        (self.work / "n").write_text(str(n))
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", f"commit {n}")
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")

    def push(self, sha: str, branch: str) -> tuple[float, float, int]:
        """Send a signed push; returns (sent at, intake seconds, build id)."""
        body = json.dumps(
            {
                "ref": f"refs/heads/{branch}",
                "after": sha,
                "deleted": False,
                "repository": {"full_name": "bench/app", "default_branch": "main"},
                "head_commit": {"id": sha, "message": "bench", "author": {"name": "Bench"}},
            }
        ).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"{self.base}/webhooks/github",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            },
        )
        sent = time.time()
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        return sent, time.perf_counter() - started, answer["builds"][0]

    def wait_final(self, build_id: int) -> dict[str, object]:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.base}/api/builds/{build_id}", timeout=5) as r:
                build: dict[str, object] = json.load(r)
            if build["state"] in ("success", "failure", "error"):
                return build
            time.sleep(0.01)
        raise TimeoutError(f"build {build_id} did not finish")

    def measure(self, sha_for: "list[str] | None", label: str) -> dict[str, float]:
        intake, start = [], []
        for n in range(PUSHES):
            sha = sha_for[n] if sha_for else self.commit(1000 + n)
            sent, took, build_id = self.push(sha, f"{label}-{n}")
            build = self.wait_final(build_id)
            assert build["state"] == "success", build
            intake.append(took * 1000)
            with urllib.request.urlopen(f"{self.base}/api/builds/{build_id}/log", timeout=5) as r:
                stamp = r.read().decode().split("make-started-at ", 1)[1].split()[0]
            start.append((float(stamp) - sent) * 1000)
        return {
            "intake_p50_ms": statistics.median(intake),
            "intake_p99_ms": percentile(intake, 0.99),
            "push_to_make_p50_ms": statistics.median(start),
            "push_to_make_p95_ms": percentile(start, 0.95),
        }


def run_daemon(bench: Bench, measure_new_commits: bool) -> dict[str, dict[str, float]]:
    hobotnica = str(Path(sys.executable).parent / "hobotnica")
    daemon = subprocess.Popen(
        [hobotnica, "serve", "--config", str(bench.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{bench.base}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise
                time.sleep(0.05)
        time.sleep(1)
        idle_before = rss_mib(daemon.pid)
        warm_sha = bench.commit(0)
        bench.wait_final(bench.push(warm_sha, "warmup")[2])  # clones the mirror once
        results = {"known": bench.measure([warm_sha] * PUSHES, "warm")}
        if measure_new_commits:
            results["new"] = bench.measure(None, "new")
        time.sleep(1)
        results["memory"] = {
            "rss_idle_at_start_mib": idle_before,
            "rss_idle_after_builds_mib": rss_mib(daemon.pid),
        }
        return results
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    from runner.build.sandbox import bubblewrap_problem

    results: dict[str, dict[str, float]] = {}
    # Not under /tmp: a sandboxed build has a private /tmp, and its stamp must reach us.
    with tempfile.TemporaryDirectory(prefix=".work-", dir=Path(__file__).parent) as tmp:
        bench = Bench(Path(tmp) / "plain")
        bench.setup()
        plain = run_daemon(bench, measure_new_commits=True)
        results["warm_mirror_known_commit"] = plain["known"]
        results["warm_mirror_new_commit"] = plain["new"]
        results["memory"] = plain["memory"]
        if bubblewrap_problem() is None:
            sandboxed = Bench(Path(tmp) / "bubblewrap", sandbox="bubblewrap")
            sandboxed.setup()
            results["known_commit_in_bubblewrap"] = run_daemon(sandboxed, False)["known"]
    print(
        f"{'scenario':28} {'intake p50':>11} {'intake p99':>11} {'→make p50':>10} {'→make p95':>10}"
    )
    for name, figures in results.items():
        if name == "memory":
            continue
        print(
            f"{name:28} {figures['intake_p50_ms']:9.2f}ms {figures['intake_p99_ms']:9.2f}ms"
            f" {figures['push_to_make_p50_ms']:8.1f}ms {figures['push_to_make_p95_ms']:8.1f}ms"
        )
    memory = results["memory"]
    print(
        f"daemon RSS idle: {memory['rss_idle_at_start_mib']:.1f} MiB at start, "
        f"{memory['rss_idle_after_builds_mib']:.1f} MiB after {2 * PUSHES + 1} builds"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
