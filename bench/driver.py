"""The benchmark's neutral driver: what it pushes and how, the same for every system measured.

Local bare repositories (commits made in bulk with `git fast-import`), GitHub-shaped push payloads
signed with HMAC-SHA256 as GitHub signs them, sent as GitHub sends them: by default a new
connection per delivery (`Connection: close`). Each commit's Makefile stamps the moment `make
test` starts, into its output and into a stamps file next to the repositories (a sandboxed build
cannot write there; its output still has it).
"""

import asyncio
import hashlib
import hmac
import json
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).parent
PAYLOAD_EXAMPLE = HERE.parent / "tests" / "payloads" / "push.json"
SECRET = "bench-secret-0123456789abcdef"
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


def makefile(stamps: Path, *, seconds: float = 0.0) -> str:
    """`make test`: stamps its start (and which commit: the file `n`), then takes `seconds`."""
    start = (
        f"\t@t=$$(date +%s.%N); echo {START_STAMP} $$t;"
        f" echo $$t $$(cat n) >> {stamps} 2>/dev/null || true\n"
    )
    return "test:\n" + start + (f"\t@sleep {seconds}\n" if seconds else "")


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
        + f"M 644 inline n\ndata {len(f'appended {n}')}\nappended {n}\n".encode()
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


@dataclass
class Sent:
    """What sending a set of pushes measured."""

    sent_at: list[float]  # each delivery's start (time.time(), as a build's stamp)
    latencies_ms: list[float]  # each delivery's, from its connection's start to the answer
    took_s: float
    answers: list[Any]  # each answer's JSON (None if it was not JSON)
    answered_order: list[int]  # the deliveries' indexes in the order they were answered


async def send_all(
    urls: list[str],
    bodies: list[bytes],
    concurrency: int,
    *,
    keep_alive: aiohttp.ClientSession | None = None,
    accepted: int = 202,
) -> Sent:
    """POST every body (signed ahead of time) to the urls in turn, `concurrency` at a time: as
    GitHub does, each on a new connection (`Connection: close`), or over `keep_alive`'s."""
    prepared = [(body, signed_headers(body)) for body in bodies]
    latencies: list[float] = [0.0] * len(prepared)
    sent_at: list[float] = [0.0] * len(prepared)
    answers: list[Any] = [None] * len(prepared)
    order: list[int] = []
    next_index = iter(range(len(prepared)))
    session = keep_alive or aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=concurrency)
    )

    async def worker() -> None:
        for index in next_index:
            body, headers = prepared[index]
            if keep_alive is None:
                headers = headers | {"Connection": "close"}
            sent_at[index] = time.time()
            started = time.perf_counter()
            async with session.post(urls[index % len(urls)], data=body, headers=headers) as answer:
                text = await answer.text()
                assert answer.status == accepted, (answer.status, text)
            latencies[index] = (time.perf_counter() - started) * 1000
            order.append(index)
            if answer.content_type == "application/json":
                answers[index] = json.loads(text)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if keep_alive is None:
            await session.close()
    return Sent(sent_at, latencies, time.perf_counter() - started, answers, order)


async def wait_for_lines(path: Path, count: int, limit: float) -> list[str]:
    """Until `path` has `count` lines (a stamp or a "done" each), up to `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name}: {len(lines)} lines of {count} after {limit} s")
        await asyncio.sleep(0.002)  # a stat every 2 ms of the driver's: nothing to the measured


S1_PUSHES = 20
# One S1 push: (its body, whether over a kept-alive connection) → (response ms, push → make ms).
OnePush = Callable[..., Awaitable[tuple[float, float]]]


async def s1_rows(repository: str, bare: Path, mirrored: bytes, one: OnePush) -> dict[str, float]:
    """S1 on a warm clone, one push at a time: first GitHub's traffic (each push a commit the
    clone has not fetched yet, each delivery on a new connection), then, secondary, the same
    commit again over a kept-alive connection."""
    fresh = []
    for n in range(S1_PUSHES):
        sha = append_commit(bare, n)
        fresh.append(await one(next(push_bodies(repository, [sha]))))
    again = [await one(mirrored, keep_alive=True) for _ in range(S1_PUSHES)]
    figures = {}
    for prefix, samples in (("", fresh), ("mirrored_keepalive_", again)):
        responses, starts = [s[0] for s in samples], [s[1] for s in samples]
        figures |= {
            f"{prefix}push_to_make_p50_ms": statistics.median(starts),
            f"{prefix}push_to_make_p95_ms": percentile(starts, 0.95),
            f"{prefix}response_p50_ms": statistics.median(responses),
            f"{prefix}response_p99_ms": percentile(responses, 0.99),
        }
    return figures
