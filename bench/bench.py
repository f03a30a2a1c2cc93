"""Hobotnica's benchmark: `make bench`. Bounded, loopback only, a few minutes on 2 cores.

It creates local bare repositories (commits made in bulk with `git fast-import`), starts a real
`hobotnica serve` with a fake GitHub in this process (statuses are really posted to it), sends
signed push payloads shaped like GitHub's, and reports as a table and as JSON:

- S1: one push at a time, 20 times, to a warm mirror: intake latency (p50/p99) and push → `make`
  start (p50/p95; the Makefile's `test` target prints the time it starts into its log). Rows for a
  commit already in the mirror, a new commit (incremental fetch), and the sandbox.
- S2: 10 repositories x 10 pushes at concurrency 20: intake rate, builds run, whether the newest
  push of every repository was built, and the time until all newest pushes have a final status.
- S3: 2,000 pushes to one repository at concurrency 50: intake rate and p99, builds run, time from
  the last webhook to the newest push's final status. Run 3 times; the median run is reported.
- Memory: the daemon's RSS idle, and its peak through S3 (sampled from /proc every 10 ms).
"""

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).parent
PAYLOAD_EXAMPLE = HERE.parent / "tests" / "payloads" / "push.json"
SECRET = "bench-secret-0123456789abcdef"
TOKEN = "bench-token-0123456789"
WAIT_LIMIT = 120.0
S3_RUNS = 3
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}
START_STAMP = "make-started-at"
FAST_MAKEFILE = f"test:\n\t@echo {START_STAMP} $$(date +%s.%N)\n"
# S2 and S3 run a test that takes a moment, as real ones do.
SLOW_MAKEFILE = f"test:\n\t@echo {START_STAMP} $$(date +%s.%N)\n\t@sleep 0.2\n"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def append_commit(bare: Path, n: int) -> str:
    """One more commit on main (the daemon has not seen it yet); returns its sha."""
    message = f"appended {n}\n".encode()
    stream = (
        b"commit refs/heads/main\n"
        + f"committer Bench <bench@example.com> {1800000000 + n} +0000\n".encode()
        + f"data {len(message)}\n".encode()
        + message
        + b"from refs/heads/main^0\n"
        + f"M 644 inline appended\ndata {len(str(n))}\n{n}\n".encode()
    )
    subprocess.run(
        ["git", "-C", str(bare), "fast-import", "--quiet"], input=stream, check=True, env=GIT_ENV
    )
    out = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "main"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def make_repository(root: Path, name: str, commits: int, makefile: str) -> list[str]:
    """A bare repository with `commits` commits on main; returns their shas, oldest first."""
    bare = root / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=GIT_ENV
    )
    stream = []
    for n in range(commits):
        data = f"{name} {n}\n".encode()  # unique per repository: shas must not repeat
        message = f"{name}: commit {n}\n".encode()
        stream += [
            b"commit refs/heads/main\n",
            f"mark :{n + 1}\n".encode(),
            f"committer Bench <bench@example.com> {1700000000 + n} +0000\n".encode(),
            f"data {len(message)}\n".encode() + message,
        ]
        if n:
            stream.append(f"from :{n}\n".encode())
        stream.append(f"M 644 inline Makefile\ndata {len(makefile)}\n{makefile}\n".encode())
        stream.append(f"M 644 inline n\ndata {len(data)}\n".encode() + data + b"\n")
    subprocess.run(
        ["git", "-C", str(bare), "fast-import", "--quiet"],
        input=b"".join(stream),
        check=True,
        env=GIT_ENV,
    )
    out = subprocess.run(
        ["git", "-C", str(bare), "rev-list", "--reverse", "main"],
        check=True,
        capture_output=True,
        env=GIT_ENV,
        text=True,
    )
    return out.stdout.split()


@dataclass
class FakeGitHub:
    """Takes status posts like GitHub and notes when each commit got a final state."""

    final_at: dict[tuple[str, str], float] = field(default_factory=dict)
    posts: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_status(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts += 1
        if body["state"] != "pending":
            self.final_at[(request.match_info["sha"], body["state"])] = time.time()
            self.changed.set()
        return web.json_response(body, status=201)

    def final(self, sha: str) -> float | None:
        times = [at for (s, _), at in self.final_at.items() if s == sha]
        return min(times) if times else None


class Daemon:
    """`hobotnica serve` on one port, or `nodes` of them sharing one PostgreSQL database."""

    event_loop = "uvloop"  # the daemon's default; `--event-loop asyncio` compares
    cluster: Any = None  # a throwaway PostgreSQL (`--database postgresql`); None: SQLite
    nodes = 1
    logs: Path | None = None  # `--logs DIR`: each daemon's output goes there

    def __init__(
        self,
        root: Path,
        fake_url: str,
        projects: list[str],
        sandbox: str = "none",
        builds: str = "",
    ):
        self.ports = [free_port() for _ in range(self.nodes)]
        self.port = self.ports[0]
        self.base = f"http://127.0.0.1:{self.port}"  # every node shares the public URL
        self.webhook_urls = [f"http://127.0.0.1:{port}/webhooks/github" for port in self.ports]
        database = f'database_url = "{self.cluster.new_database()}"\n' if self.cluster else ""
        project_tables = "".join(f'[[projects]]\nrepository = "{p}"\n' for p in projects)
        self.configs = []
        for index, port in enumerate(self.ports):
            config = root / f"hobotnica-{index}.toml"
            config.write_text(
                f'[server]\nport = {port}\npublic_url = "{self.base}"\n'
                f'event_loop = "{self.event_loop}"\nnode_name = "bench-{index}"\n'
                f'[github]\napi_url = "{fake_url}"\ngit_url = "{(root / "remotes").as_uri()}"\n'
                f'webhook_secret = "{SECRET}"\ntoken = "{TOKEN}"\ncatch_up = false\n'
                f'[storage]\ndata_dir = "var-{index}"\n{database}'
                f'[builds]\nsandbox = "{sandbox}"\nconcurrency = 2\n'
                + builds
                # The benchmark reads builds through /api/builds/{id}, without signing in.
                + "[ui]\npublic = true\n"
                + project_tables
            )
            self.configs.append(config)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.processes[0] if self.processes else None

    def start(self) -> None:
        hobotnica = str(Path(sys.executable).parent / "hobotnica")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOBOTNICA_")}
        for config in self.configs:
            output: Any = subprocess.DEVNULL
            if self.logs is not None:
                self.logs.mkdir(parents=True, exist_ok=True)
                name = f"{config.parent.name}-{config.stem}-{len(self.processes)}.log"
                output = (self.logs / name).open("ab")
            self.processes.append(
                subprocess.Popen(
                    [hobotnica, "serve", "--config", str(config)],
                    stdout=output,
                    stderr=subprocess.STDOUT if self.logs is not None else subprocess.DEVNULL,
                    env=env,
                )
            )

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        for port in self.ports:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/health") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("daemon did not become healthy")
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)


def push_bodies(repository: str, shas: list[str], branch: str = "main") -> Iterator[bytes]:
    example = json.loads(PAYLOAD_EXAMPLE.read_text())
    owner, name = repository.split("/")
    example["repository"].update(full_name=repository, name=name, default_branch="production")
    example["repository"]["owner"]["login"] = owner
    example["ref"] = f"refs/heads/{branch}"
    before = "0" * 40
    for sha in shas:
        example.update(before=before, after=sha)
        example["head_commit"].update(id=sha, message=f"commit {sha[:7]}")
        before = sha
        yield json.dumps(example).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


async def send_all(
    session: aiohttp.ClientSession, urls: list[str], bodies: list[bytes], concurrency: int
) -> tuple[list[float], float, list[int]]:
    """POST every body (signed ahead of time), to the nodes in turn; returns latencies (ms),
    wall time, build ids."""
    prepared = [(body, signed_headers(body)) for body in bodies]
    latencies: list[float] = [0.0] * len(prepared)
    build_ids: list[int] = [0] * len(prepared)
    next_index = iter(range(len(prepared)))

    async def worker() -> None:
        for index in next_index:
            body, hdrs = prepared[index]
            started = time.perf_counter()
            url = urls[index % len(urls)]
            async with session.post(url, data=body, headers=hdrs) as response:
                answer = await response.json()
                assert response.status == 202, (response.status, answer)
            latencies[index] = (time.perf_counter() - started) * 1000
            build_ids[index] = answer["builds"][0]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, build_ids


async def build(session: aiohttp.ClientSession, daemon: Daemon, build_id: int) -> dict[str, Any]:
    async with session.get(f"{daemon.base}/api/builds/{build_id}") as response:
        data: dict[str, Any] = await response.json()
        return data


async def wait_final(fake: FakeGitHub, shas: list[str]) -> float:
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        times = [fake.final(sha) for sha in shas]
        if all(t is not None for t in times):
            return max(t for t in times if t is not None)
        if time.monotonic() > deadline:
            raise TimeoutError("newest pushes did not get a final status")
        fake.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fake.changed.wait(), 1)


async def builds_run(session: aiohttp.ClientSession, daemon: Daemon, ids: list[int]) -> int:
    """How many of these builds started `make` (or at least reached running)."""
    started = 0
    for build_id in sorted(set(ids)):
        if (await build(session, daemon, build_id))["started_at"] is not None:
            started += 1
    return started


async def s1(
    session: aiohttp.ClientSession, root: Path, fake_url: str, sandbox: str
) -> dict[str, float]:
    shas = make_repository(root / "remotes" / "bench", "s1", 1, FAST_MAKEFILE)
    daemon = Daemon(root, fake_url, ["bench/s1"], sandbox)
    daemon.start()
    try:
        await daemon.wait_healthy(session)
        urls = daemon.webhook_urls

        async def one(body: bytes) -> tuple[float, float]:
            sent = time.time()
            latencies, _, ids = await send_all(session, urls, [body], 1)
            deadline = time.monotonic() + WAIT_LIMIT
            while (b := await build(session, daemon, ids[0]))["state"] in ("queued", "running"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.025)  # make stamps its own start: polling only adds load
            assert b["state"] == "success", b
            async with session.get(f"{daemon.base}/api/builds/{ids[0]}/log") as response:
                log = await response.text()
            started = float(log.split(START_STAMP + " ", 1)[1].split()[0])
            return latencies[0], (started - sent) * 1000

        bodies = list(push_bodies("bench/s1", shas))
        await one(bodies[0])  # the first build clones the mirror
        known = [await one(bodies[0]) for _ in range(20)]  # the same commit again
        fresh = []
        if sandbox == "none":  # each push a commit the mirror has not fetched yet
            bare = root / "remotes" / "bench" / "s1.git"
            for n in range(20):
                sha = append_commit(bare, n)
                fresh.append(await one(next(push_bodies("bench/s1", [sha]))))
        rows = {"known": known} | ({"new": fresh} if fresh else {})
        return {
            f"{name}_{key}": value
            for name, samples in rows.items()
            for key, value in (
                ("intake_p50_ms", statistics.median(s[0] for s in samples)),
                ("intake_p99_ms", percentile([s[0] for s in samples], 0.99)),
                ("push_to_make_p50_ms", statistics.median(s[1] for s in samples)),
                ("push_to_make_p95_ms", percentile([s[1] for s in samples], 0.95)),
            )
        }
    finally:
        daemon.stop()


async def s2(
    session: aiohttp.ClientSession, root: Path, fake: FakeGitHub, fake_url: str
) -> dict[str, float]:
    repos = [f"bench/s2-{n}" for n in range(10)]
    shas = {
        r: make_repository(root / "remotes" / "bench", r.split("/")[1], 10, SLOW_MAKEFILE)
        for r in repos
    }
    daemon = Daemon(root, fake_url, repos)
    daemon.start()
    try:
        await daemon.wait_healthy(session)
        bodies_by_repo = {r: list(push_bodies(r, shas[r])) for r in repos}
        # Round robin: every repository's first push, then every second push, and so on.
        order = [(r, n) for n in range(10) for r in repos]
        bodies = [bodies_by_repo[r][n] for r, n in order]
        latencies, took, ids = await send_all(session, daemon.webhook_urls, bodies, 20)
        last_sent = time.time()
        # The newest push of a repository is the one accepted last (GitHub does not order them).
        newest = {}
        for (repo, n), build_id in zip(order, ids, strict=True):
            if build_id > newest.get(repo, (0, ""))[0]:
                newest[repo] = (build_id, shas[repo][n])
        done_at = await wait_final(fake, [sha for _, sha in newest.values()])
        per_repo = []
        newest_built = True
        for repo in repos:
            repo_ids = [b for (r, _), b in zip(order, ids, strict=True) if r == repo]
            per_repo.append(await builds_run(session, daemon, repo_ids))
            newest_build = await build(session, daemon, newest[repo][0])
            newest_built &= newest_build["state"] == "success"
        return {
            "intake_per_s": len(bodies) / took,
            "intake_p99_ms": percentile(latencies, 0.99),
            "builds_run": sum(per_repo),
            "max_builds_per_repository": max(per_repo),
            "newest_all_built": float(newest_built),
            "all_newest_final_s": done_at - last_sent,
        }
    finally:
        daemon.stop()


async def s3(
    session: aiohttp.ClientSession, root: Path, fake: FakeGitHub, fake_url: str, name: str
) -> dict[str, float]:
    shas = make_repository(root / "remotes" / "bench", name, 2000, SLOW_MAKEFILE)  # unique shas
    daemon = Daemon(root, fake_url, [f"bench/{name}"])
    daemon.start()
    try:
        await daemon.wait_healthy(session)
        assert daemon.process is not None
        await asyncio.sleep(1)
        idle = rss_mib(daemon.process.pid)
        peak = [idle]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_mib(daemon.process.pid))  # type: ignore[union-attr]
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        bodies = list(push_bodies(f"bench/{name}", shas))
        latencies, took, ids = await send_all(session, daemon.webhook_urls, bodies, 50)
        last_sent = time.time()
        newest_sha = shas[ids.index(max(ids))]
        done_at = await wait_final(fake, [newest_sha])
        sampling.set()
        sampler.join()
        return {
            "intake_per_s": len(bodies) / took,
            "intake_p50_ms": statistics.median(latencies),
            "intake_p99_ms": percentile(latencies, 0.99),
            "builds_run": await builds_run(session, daemon, ids),
            "newest_final_s": done_at - last_sent,
            "rss_idle_mib": idle,
            "rss_peak_mib": peak[0],
            "rss_growth_mib": peak[0] - idle,
        }
    finally:
        daemon.stop()


async def run(scenarios: list[str]) -> dict[str, dict[str, float]]:
    from runner.executor.sandbox import bubblewrap_problem

    fake = FakeGitHub()
    app = web.Application()
    app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", fake.create_status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    fake_url = f"http://127.0.0.1:{fake_port}"
    results: dict[str, dict[str, float]] = {}
    connector = aiohttp.TCPConnector(limit=100)
    # Not under /tmp: a sandboxed build has a private /tmp.
    with tempfile.TemporaryDirectory(prefix=".work-", dir=HERE) as tmp:
        async with aiohttp.ClientSession(connector=connector) as session:
            for name in scenarios:
                root = Path(tmp) / name
                root.mkdir()
                if name == "s1":
                    results["s1"] = await s1(session, root, fake_url, "none")
                elif name == "s1-bubblewrap" and bubblewrap_problem() is None:
                    results["s1-bubblewrap"] = await s1(session, root, fake_url, "bubblewrap")
                elif name == "s2":
                    results["s2"] = await s2(session, root, fake, fake_url)
                elif name == "s3":
                    # A second-long burst is noisy on 2 shared cores: report the median run.
                    runs = []
                    for attempt in range(S3_RUNS):
                        attempt_root = root / str(attempt)
                        attempt_root.mkdir()
                        name = f"s3-{attempt}"
                        runs.append(await s3(session, attempt_root, fake, fake_url, name))
                    runs.sort(key=lambda run: run["intake_per_s"])
                    results["s3"] = runs[len(runs) // 2]
                    results["s3"]["intake_per_s_min"] = runs[0]["intake_per_s"]
                    results["s3"]["intake_per_s_max"] = runs[-1]["intake_per_s"]
    await runner.cleanup()
    return results


def print_table(results: dict[str, dict[str, float]]) -> None:
    for scenario, figures in results.items():
        print(f"\n{scenario}")
        for key, value in figures.items():
            print(f"  {key:34} {value:10.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=["s1", "s1-bubblewrap", "s2", "s3"],
        help="run only these (default: all)",
    )
    parser.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default=Daemon.event_loop,
        help="the daemon's server.event_loop (default: %(default)s)",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql", "both"],
        default="sqlite",
        help="the store: the embedded SQLite, a throwaway PostgreSQL cluster (Debian's), or"
        " both, in alternation (see --rounds)",
    )
    parser.add_argument(
        "--nodes", type=int, default=1, help="nodes on the one PostgreSQL (webhooks in turn)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --database both: run the scenarios this many times, SQLite then PostgreSQL"
        " each time, and report each figure's median (a noisy machine's drift hits both alike)",
    )
    parser.add_argument("--logs", type=Path, help="keep each daemon's output in this folder")
    args = parser.parse_args()
    Daemon.logs = args.logs
    if args.nodes > 1 and args.database == "sqlite":
        parser.error("several nodes need --database postgresql")
    Daemon.event_loop = args.event_loop
    with contextlib.ExitStack() as stack:
        cluster = None
        if args.database != "sqlite":
            sys.path.insert(0, str(HERE.parent))  # the tests' throwaway cluster
            from tests.support.postgres import throwaway_cluster

            cluster = stack.enter_context(throwaway_cluster(durable=True))
        return measure(args, cluster)


def measure(args: argparse.Namespace, cluster: Any) -> int:
    scenarios = args.scenario or ["s1", "s1-bubblewrap", "s2", "s3"]
    stores = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {store: [] for store in stores}
    for _ in range(args.rounds if args.database == "both" else 1):
        for store in stores:
            Daemon.cluster = cluster if store == "postgresql" else None
            Daemon.nodes = args.nodes if store == "postgresql" else 1
            rounds[store].append(asyncio.run(run(scenarios)))
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" daemon on {args.event_loop}"
    )
    results = {}
    for store, runs in rounds.items():
        print(
            f"\n== {store}, {args.nodes if store == 'postgresql' else 1} node(s),"
            f" median of {len(runs)} round(s)"
        )
        results[store] = {
            scenario: {
                key: statistics.median(run[scenario][key] for run in runs)
                for key in runs[0][scenario]
            }
            for scenario in runs[0]
        }
        print_table(results[store])
    if args.json:
        figures = results if len(results) > 1 else next(iter(results.values()))
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
