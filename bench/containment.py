"""The daemon while builds hit their limits: `python bench/containment.py` (root, cgroups).

A real `hobotnica serve` with `builds.memory_max` and `builds.tasks_max`; two builds at once: one
touches memory 8 MiB at a time until its cgroup's limit ends it, the other starts sleepers until
its cgroup refuses more processes, and holds them for a few seconds. Meanwhile `/health` is asked
every 20 ms and the daemon's RSS read from /proc. Loopback only; bounded in count and time (the
builds themselves stop at 2 GiB and 2,000 processes should the limits not hold).
"""

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
import bench as harness  # the benchmark's own helpers, beside this file

MIB = 1024 * 1024
MEMORY_MAX = 256 * MIB
TASKS_MAX = 64
SAMPLE_EVERY = 0.02
IDLE_SAMPLES = 200

HOG = """\
held = []
for n in range(256):
    held.append(bytearray(8 << 20))
    print(f"{len(held) * 8} MiB", flush=True)
print("2 GiB touched: no limit held")
"""
BOMB = """\
import subprocess, time
started = 0
for n in range(2000):
    try:
        subprocess.Popen(["sleep", "20"]); started += 1
    except OSError:
        break
print(f"started {started} sleepers", flush=True)
time.sleep(5)
"""


def repository(root: Path, name: str, script: str) -> str:
    """A bare repository bench/NAME whose `make test` runs NAME.py; returns its commit."""
    work = root / "work" / name
    work.mkdir(parents=True)
    (work / "Makefile").write_text(f"test:\n\t@python3 {name}.py\n")
    (work / f"{name}.py").write_text(script)
    bare = root / "remotes" / "bench" / f"{name}.git"
    for command in (
        ["git", "init", "-q", "-b", "main", str(work)],
        ["git", "-C", str(work), "add", "."],
        ["git", "-C", str(work), "commit", "-q", "-m", name],
        ["git", "clone", "-q", "--bare", str(work), str(bare)],
    ):
        subprocess.run(command, check=True, env=harness.GIT_ENV)
    out = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "main"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


async def health_latencies(
    session: aiohttp.ClientSession, url: str, until: "asyncio.Future[None]", limit: int
) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    while not until.done() and len(latencies) < limit:
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            statuses.append(response.status)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(SAMPLE_EVERY)
    return latencies, statuses


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": harness.percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "samples": len(latencies),
    }


async def run() -> dict[str, object]:
    fake = harness.FakeGitHub()
    app = web.Application()
    app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", fake.create_status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    fake_port = harness.free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    with tempfile.TemporaryDirectory(prefix=".work-", dir=harness.HERE) as tmp:
        root = Path(tmp)
        hog, bomb = repository(root, "hog", HOG), repository(root, "bomb", BOMB)
        daemon = harness.Daemon(
            root,
            f"http://127.0.0.1:{fake_port}",
            ["bench/hog", "bench/bomb"],
            builds=f"memory_max = {MEMORY_MAX}\ntasks_max = {TASKS_MAX}\nkill_grace = 1\n",
        )
        daemon.start()
        assert daemon.process is not None
        pid = daemon.process.pid
        try:
            async with aiohttp.ClientSession() as session:
                await daemon.wait_healthy(session)
                health = f"{daemon.base}/health"
                idle_rss = harness.rss_mib(pid)
                never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                idle, _ = await health_latencies(session, health, never, IDLE_SAMPLES)
                url = f"{daemon.base}/webhooks/github"
                bodies = [
                    next(harness.push_bodies("bench/hog", [hog])),
                    next(harness.push_bodies("bench/bomb", [bomb])),
                ]
                await harness.send_all(session, url, bodies, 2)
                done = asyncio.ensure_future(harness.wait_final(fake, [hog, bomb]))
                peak_rss = idle_rss

                async def sample_rss() -> None:
                    nonlocal peak_rss
                    while not done.done():
                        peak_rss = max(peak_rss, harness.rss_mib(pid))
                        await asyncio.sleep(SAMPLE_EVERY)

                rss_task = asyncio.ensure_future(sample_rss())
                busy, statuses = await health_latencies(session, health, done, 10_000)
                await done
                await rss_task
                finals = {
                    sha: [state for (s, state) in fake.final_at if s == sha] for sha in (hog, bomb)
                }
        finally:
            daemon.stop()
    await runner.cleanup()
    return {
        "rss_idle_mib": round(idle_rss, 1),
        "rss_peak_during_mib": round(peak_rss, 1),
        "health_idle": summary(idle),
        "health_during": summary(busy),
        "health_not_200": sum(1 for status in statuses if status != 200),
        "hog_final": finals[hog],
        "bomb_final": finals[bomb],
    }


def main() -> int:
    results = asyncio.run(run())
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
