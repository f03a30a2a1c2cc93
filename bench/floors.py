"""What the driver can show at all on this machine: the same requests answered by servers that
do (almost) nothing, side by side with webhook doing nothing either.

`make bench-floors` (under a minute; loopback only). Each server runs in a process of its own
and answers every push with a 2xx; the driver (`driver.py`) is the one `make bench` and
`make bench-peer` use, a new connection per request:

- `aiohttp`: aiohttp on uvloop, as the daemon, reading the body and answering 202;
- `aiohttp + HMAC + JSON`: also checks the signature and parses the payload;
- `... + fsync'd row`: also commits the delivery as one row of SQLite (WAL, synchronous=FULL, on a
  thread), the least an answer "written to disk first" can cost;
- `webhook, no command`: adnanh/webhook checking the same HMAC rule, its hook a no-op;
- `nginx`: Debian's nginx answering `return 202` (its workers on both cores, body discarded):
  the driver's own ceiling, what it shows of a server that costs next to nothing.

S1's row is the response p50 of requests sent one at a time; S3's, the requests a second of
2,000 pushes sent 50 at a time. Hobotnica's own figures are `make bench-peer`'s, whose bounds
are ratios to webhook's: these floors say how far below those bounds a Python daemon on this
machine can go.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import uvloop
from aiohttp import web
from driver import HERE, SECRET, free_port, push_bodies, send_all
from peer_webhook import hooks_json, start_webhook, wait_listening

S1_REQUESTS = 200
S1_WARMUP = 10
S3_PUSHES = 2000
S3_CONCURRENCY = 50
KINDS = {
    "bare": "aiohttp",
    "signed": "aiohttp + HMAC + JSON",
    "fsynced": "aiohttp + HMAC + JSON + fsync'd row",
    "webhook": "webhook, no command",
    "nginx": "nginx, return 202",
}
NOT_PYTHON = ("webhook", "nginx")  # started as themselves, not by `--serve`
WITH_S3 = ("bare", "webhook", "nginx")  # the others only add to S1's answer
NGINX_CONF = """daemon off;
worker_processes auto;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder};
    server {{
        listen 127.0.0.1:{port};
        location = /webhooks/github {{ return 202; }}
    }}
}}
"""


def serve(kind: str, port: int, folder: Path) -> None:
    """One of the floors' servers, until killed."""
    database = sqlite3.connect(
        folder / "floor.sqlite3", isolation_level=None, check_same_thread=False
    )
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=FULL")
    database.execute("CREATE TABLE deliveries (id TEXT PRIMARY KEY, body BLOB)")
    writer = ThreadPoolExecutor(max_workers=1)  # sqlite3 connections are one thread's

    def write(delivery: str, body: bytes) -> None:
        database.execute("BEGIN IMMEDIATE")
        database.execute("INSERT INTO deliveries VALUES (?, ?)", (delivery, body))
        database.execute("COMMIT")

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        if kind != "bare":
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(f"sha256={digest}", request.headers["X-Hub-Signature-256"]):
                return web.Response(status=401)
            orjson.loads(body)
        if kind == "fsynced":
            delivery = request.headers["X-GitHub-Delivery"]
            await asyncio.get_running_loop().run_in_executor(writer, write, delivery, body)
        return web.Response(status=202, body=b'{"builds":[]}', content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/webhooks/github", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    uvloop.run(main())


def start(kind: str, folder: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """The server of `kind`, listening; its URL and the status it answers with."""
    port = free_port()
    if kind == "webhook":
        hooks = folder / "hooks.json"
        hooks.write_text(hooks_json(Path("/bin/true")))
        return start_webhook(hooks, port), f"http://127.0.0.1:{port}/hooks/github", 200
    if kind == "nginx":
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(folder=folder, port=port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(folder), "-c", str(conf)]
    else:
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
        argv += ["--dir", str(folder)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, process, kind)
    return process, f"http://127.0.0.1:{port}/webhooks/github", 202


async def measure(kind: str, s3: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=".work-floor-", dir=HERE) as tmp:
        process, url, status = start(kind, Path(tmp))
        try:
            shas = [f"{n:040x}" for n in range(max(S1_REQUESTS, S3_PUSHES))]
            latencies = []
            for body in push_bodies("bench/floor", shas[:S1_REQUESTS]):
                sent = await send_all([url], [body], 1, accepted=status)
                latencies += sent.latencies_ms
            figures = {"s1_response_p50_ms": statistics.median(latencies[S1_WARMUP:])}
            if s3:
                bodies = list(push_bodies("bench/floor", shas[:S3_PUSHES]))
                sent = await send_all([url], bodies, S3_CONCURRENCY, accepted=status)
                figures["s3_per_s"] = len(bodies) / sent.took_s
            return figures
        finally:
            process.terminate()  # nginx's master ends its workers on SIGTERM, not on SIGKILL
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def run(rounds: int) -> dict[str, dict[str, float]]:
    """The servers in turn, round after round (a noisy machine's drift hits them alike); each
    figure's median over the rounds."""
    samples: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            figures = await measure(kind, s3=kind in WITH_S3)
            for name, value in figures.items():
                samples[kind].setdefault(name, []).append(value)
    return {
        kind: {name: statistics.median(values) for name, values in figures.items()}
        for kind, figures in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--serve", choices=[k for k in KINDS if k not in NOT_PYTHON], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.dir)
        return 0
    results = asyncio.run(run(args.rounds))
    heading = f"{'':40} {'S1 response p50':>16} {'S3 /s':>8}"
    print(f"\n== floors, median of {args.rounds} rounds\n  {heading}")
    for kind, label in KINDS.items():
        figures = results[kind]
        s3 = f"{figures['s3_per_s']:8.0f}" if "s3_per_s" in figures else f"{'':8}"
        print(f"  {label:40} {figures['s1_response_p50_ms']:13.2f} ms {s3}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
