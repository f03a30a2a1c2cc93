"""Hobotnica's benchmark: `make bench`. Bounded, loopback only, a few minutes on 2 cores.

It starts a real `hobotnica serve` with a fake GitHub in this process (statuses are really posted
to it) and drives it with the neutral driver (`driver.py`): local bare repositories, signed
GitHub-shaped pushes, each delivery on a new connection as GitHub sends them. It reports a table
and JSON:

- S1: one push at a time to a warm clone. Headline: each push a new commit (the mirror fetches
  it), each delivery a new connection: response p50/p99 and push → `make` start p50/p95 (the
  Makefile stamps its start). Secondary rows (`mirrored_keepalive_`): the same commit again over
  a kept-alive connection. Also with the bubblewrap sandbox.
- S2: 10 repositories x 10 pushes at concurrency 20: intake rate, builds run, whether the newest
  push of every repository was built, and the time until all newest pushes have a final status.
- S3: 2,000 pushes to one repository at concurrency 50, a new connection each: intake rate, p50
  and p99, builds run, whether the newest was built, time from the last webhook to its final
  status. Run 3 times; the median run is reported; then once over kept-alive connections
  (`keepalive_`, secondary).
- Memory: the daemon's RSS idle, and its peak through S3 (sampled from /proc every 10 ms).

`--peer webhook` runs S1 and S3 in the same run against adnanh/webhook with a shell script
(`peer_webhook.py`) and prints both side by side with the ratios; `--database` compares the
stores.
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import peer_webhook
from aiohttp import web
from driver import (
    HERE,
    SECRET,
    START_STAMP,
    free_port,
    make_repository,
    makefile,
    percentile,
    push_bodies,
    rss_mib,
    s1_rows,
    send_all,
)

TOKEN = "bench-token-0123456789"
WAIT_LIMIT = 120.0
S3_RUNS = 3
S3_PUSHES = 2000


@dataclass
class FakeGitHub:
    """Takes status posts like GitHub and notes when each commit got a final state."""

    final_at: dict[tuple[str, str], float] = field(default_factory=dict)
    # By the build page its link names (each daemon has its own port, and its own build ids).
    build_final_at: dict[str, float] = field(default_factory=dict)
    posts: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_status(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts += 1
        if body["state"] != "pending":
            self.final_at[(request.match_info["sha"], body["state"])] = time.time()
            self.build_final_at.setdefault(body["target_url"], time.time())
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


async def build(session: aiohttp.ClientSession, daemon: Daemon, build_id: int) -> dict[str, Any]:
    async with session.get(f"{daemon.base}/api/builds/{build_id}") as response:
        data: dict[str, Any] = await response.json()
        return data


async def wait_build_final(fake: FakeGitHub, daemon: Daemon, build_id: int) -> None:
    """Until GitHub hears a build's final state (as GitHub would: nothing polls the daemon)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while f"{daemon.base}/builds/{build_id}" not in fake.build_final_at:
        if time.monotonic() > deadline:
            raise TimeoutError(f"build {build_id} got no final status")
        fake.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fake.changed.wait(), 1)


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
    session: aiohttp.ClientSession, root: Path, fake: FakeGitHub, fake_url: str, sandbox: str
) -> dict[str, float]:
    remotes = root / "remotes"
    shas = make_repository(remotes / "bench", "s1", 1, makefile(root / "stamps"))
    daemon = Daemon(root, fake_url, ["bench/s1"], sandbox)
    daemon.start()
    try:
        await daemon.wait_healthy(session)

        async def one(body: bytes, *, keep_alive: bool = False) -> tuple[float, float]:
            delivered = await send_all(
                daemon.webhook_urls, [body], 1, keep_alive=session if keep_alive else None
            )
            sent = delivered.sent_at[0]
            build_id = delivered.answers[0]["builds"][0]
            # make stamps its own start; polling the daemon meanwhile would only add load.
            await wait_build_final(fake, daemon, build_id)
            b = await build(session, daemon, build_id)
            assert b["state"] == "success", b
            async with session.get(f"{daemon.base}/api/builds/{build_id}/log") as response:
                log = await response.text()
            started = float(log.split(START_STAMP + " ", 1)[1].split()[0])
            return delivered.latencies_ms[0], (started - sent) * 1000

        bodies = list(push_bodies("bench/s1", shas))
        await one(bodies[0])  # the first build clones the mirror
        return await s1_rows("bench/s1", remotes / "bench" / "s1.git", bodies[0], one)
    finally:
        daemon.stop()


async def s2(
    session: aiohttp.ClientSession, root: Path, fake: FakeGitHub, fake_url: str
) -> dict[str, float]:
    repos = [f"bench/s2-{n}" for n in range(10)]
    shas = {
        r: make_repository(
            root / "remotes" / "bench", r.split("/")[1], 10, makefile(root / "stamps", seconds=0.2)
        )
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
        delivered = await send_all(daemon.webhook_urls, bodies, 20)
        latencies, took = delivered.latencies_ms, delivered.took_s
        ids = [answer["builds"][0] for answer in delivered.answers]
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
    session: aiohttp.ClientSession,
    root: Path,
    fake: FakeGitHub,
    fake_url: str,
    name: str,
    *,
    keep_alive: bool = False,
) -> dict[str, float]:
    shas = make_repository(  # unique shas
        root / "remotes" / "bench", name, S3_PUSHES, makefile(root / "stamps", seconds=0.2)
    )
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
        delivered = await send_all(
            daemon.webhook_urls, bodies, 50, keep_alive=session if keep_alive else None
        )
        last_sent = time.time()
        ids = [answer["builds"][0] for answer in delivered.answers]
        newest_sha = shas[ids.index(max(ids))]
        done_at = await wait_final(fake, [newest_sha])
        sampling.set()
        sampler.join()
        return {
            "intake_per_s": len(bodies) / delivered.took_s,
            "intake_p50_ms": statistics.median(delivered.latencies_ms),
            "intake_p99_ms": percentile(delivered.latencies_ms, 0.99),
            "builds_run": await builds_run(session, daemon, ids),
            "newest_built": float((await build(session, daemon, max(ids)))["state"] == "success"),
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
                    results["s1"] = await s1(session, root, fake, fake_url, "none")
                elif name == "s1-bubblewrap" and bubblewrap_problem() is None:
                    results["s1-bubblewrap"] = await s1(session, root, fake, fake_url, "bubblewrap")
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
                    # Secondary: one run over kept-alive connections (not GitHub's traffic).
                    kept = root / "keepalive"
                    kept.mkdir()
                    alive = await s3(session, kept, fake, fake_url, "s3-kept", keep_alive=True)
                    for key in ("intake_per_s", "intake_p50_ms", "intake_p99_ms"):
                        results["s3"][f"keepalive_{key}"] = alive[key]
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
    parser.add_argument(
        "--peer",
        choices=["webhook"],
        help="also run S1 and S3 against a peer in the same run, with the same driver, and print"
        " the ratios: adnanh/webhook with a shell script (Debian's package, installed if missing)",
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
    systems = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    systems += [args.peer] if args.peer else []
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {system: [] for system in systems}
    for _ in range(args.rounds if len(systems) > 1 else 1):
        figures: dict[str, dict[str, dict[str, float]]] = {system: {} for system in systems}
        # Scenario by scenario, each system in turn: a side-by-side figure pair is minutes apart
        # at most, whatever the machine's drift over the whole run.
        for scenario in scenarios:
            for system in systems:
                if system == "webhook":
                    figures[system] |= asyncio.run(run_peer([scenario]))
                    continue
                Daemon.cluster = cluster if system == "postgresql" else None
                Daemon.nodes = args.nodes if system == "postgresql" else 1
                figures[system] |= asyncio.run(run([scenario]))
        for system in systems:
            rounds[system].append(figures[system])
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" daemon on {args.event_loop}"
    )
    results = {}
    for system, runs in rounds.items():
        nodes = args.nodes if system == "postgresql" else 1
        title = (
            "adnanh/webhook + shell script" if system == "webhook" else f"{system}, {nodes} node(s)"
        )
        print(f"\n== {title}, median of {len(runs)} round(s)")
        results[system] = {
            scenario: {
                key: statistics.median(run[scenario][key] for run in runs)
                for key in runs[0][scenario]
            }
            for scenario in runs[0]
        }
        print_table(results[system])
    if args.peer:
        print_ratios(results[systems[0]], results[args.peer])
    if args.json:
        figures = results if len(results) > 1 else next(iter(results.values()))
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


async def run_peer(scenarios: list[str]) -> dict[str, dict[str, float]]:
    """The peer's S1 and S3 (what it has no equivalent of is not run)."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix=".work-peer-", dir=HERE) as tmp:
        if "s1" in scenarios:
            (Path(tmp) / "s1").mkdir()
            results["s1"] = await peer_webhook.s1(Path(tmp) / "s1")
        if "s3" in scenarios:
            runs = []
            for attempt in range(S3_RUNS):
                root = Path(tmp) / f"s3-{attempt}"
                root.mkdir()
                runs.append(await peer_webhook.s3(root, f"s3-{attempt}"))
            runs.sort(key=lambda run: run["intake_per_s"])
            results["s3"] = runs[len(runs) // 2]
    return results


# (scenario, figure, what it says, the bound on ours / theirs: "<= 0.6" and so on)
RATIOS = [
    ("s1", "push_to_make_p50_ms", "S1 push → make p50 (new commit, new connection)", "<= 0.6"),
    ("s1", "response_p50_ms", "S1 response p50 (ours fsync'd first)", "<= 1"),
    (
        "s1",
        "mirrored_keepalive_push_to_make_p50_ms",
        "S1 push → make p50, mirrored, kept alive",
        "",
    ),
    ("s3", "intake_per_s", "S3 intake per second (new connections)", ">= 3"),
    ("s3", "intake_p50_ms", "S3 response p50", ""),
    ("s3", "intake_p99_ms", "S3 response p99", ""),
    ("s3", "builds_run", "S3 builds run", ""),
    ("s3", "newest_built", "S3 newest push built (1 = yes)", ""),
    ("s3", "rss_idle_mib", "idle RSS, MiB", ""),
]


def print_ratios(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]]) -> None:
    print(f"\n== side by side\n  {'':52} {'ours':>10} {'theirs':>10} {'ratio':>7}  bound")
    for scenario, key, label, bound in RATIOS:
        if key not in ours.get(scenario, {}) or key not in theirs.get(scenario, {}):
            continue
        mine, peer = ours[scenario][key], theirs[scenario][key]
        ratio = f"{mine / peer:7.2f}" if peer else "      -"
        print(f"  {label:52} {mine:10.2f} {peer:10.2f} {ratio}  {bound}")


if __name__ == "__main__":
    sys.exit(main())
