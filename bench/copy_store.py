"""Moving in, timed: `python bench/copy_store.py [--builds N] [--log-kib K]`.

Fills an embedded store through the store's interface (N push deliveries over 20 repositories,
each build claimed and finished, its statuses posted) and gives every build a log file of K KiB
(one in fifty 64 times bigger), then runs the real `hobotnica copy-store` into a fresh database
of a throwaway PostgreSQL cluster (the tests' own) and reports its wall time, rows and log bytes
a second, and the command's peak RSS (the logs are streamed, never held whole).
"""

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.core.links import log_path  # noqa: E402
from runner.store.sqlite import SQLiteStore  # noqa: E402
from tests.support import stores  # noqa: E402
from tests.support.postgres import session_cluster, stop_session_cluster  # noqa: E402

REPOSITORIES = 20


async def fill(data_dir: Path, builds: int, log_kib: int) -> int:
    store = SQLiteStore.in_data_dir(data_dir)
    try:
        for n in range(builds):
            request = stores.request(n, repository=f"octo/app-{n % REPOSITORIES}")
            await stores.deliver(store, f"delivery-{n}", request)
        while claimed := await store.claim_builds(REPOSITORIES, stores.OWNER, stores.LEASE):
            for build in claimed:
                await store.finish_build(build.id, stores.SUCCESS, 0, stores.OWNER)
        await stores.drain(store)
    finally:
        await store.close()
    logs = log_path(data_dir, 0).parent
    logs.mkdir(parents=True, exist_ok=True)
    total = 0
    line = b"\x1b[32mok\x1b[0m tests/test_something.py::test_case PASSED in 0.01 s\n"
    for build_id in range(1, builds + 1):
        size = log_kib * 1024 * (64 if build_id % 50 == 0 else 1)
        log_path(data_dir, build_id).write_bytes((line * (size // len(line) + 1))[:size])
        total += size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--builds", type=int, default=5000)
    parser.add_argument("--log-kib", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hobotnica-copy-bench-") as folder:
        data_dir = Path(folder) / "var"
        began = time.monotonic()
        log_bytes = asyncio.run(fill(data_dir, args.builds, args.log_kib))
        print(f"filled {args.builds:,} builds, {log_bytes / 2**20:.1f} MiB of logs "
              f"in {time.monotonic() - began:.1f} s")  # fmt: skip
        try:
            url = session_cluster().new_database()
            environ = {k: v for k, v in os.environ.items() if not k.startswith("HOBOTNICA")}
            began = time.monotonic()
            result = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "hobotnica"), "copy-store",
                 "--from", str(data_dir), "--to", url],
                env=environ, capture_output=True, text=True, check=False,
            )  # fmt: skip
            seconds = time.monotonic() - began
        finally:
            stop_session_cluster()
    print(result.stdout + result.stderr, end="")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"copy-store: {seconds:.1f} s wall, {args.builds / seconds:,.0f} builds/s, "
        f"{log_bytes / 2**20 / seconds:.1f} MiB/s of logs, peak RSS {peak:.1f} MiB"
    )
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
