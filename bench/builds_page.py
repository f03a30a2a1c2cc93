"""The builds page (`GET /builds`) with 100,000 builds in the store: time to first byte, with
migration 0007's indexes and without them (issue 19's figure).

Fills an embedded (SQLite) store with BUILDS finished builds over 20 repositories, 200 branches
and 50 authors (one of them rare: 10 builds), serves the real app on loopback, and times each
page ROUNDS times (median). Then drops the filter indexes and times again. Run:
`.venv/bin/python bench/builds_page.py`.
"""

import asyncio
import hashlib
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.app import create_app  # noqa: E402
from runner.core.models import BuildRequest, Job  # noqa: E402
from runner.core.settings import parse_settings  # noqa: E402
from runner.store import open_store  # noqa: E402
from runner.store.sql import rows  # noqa: E402

BUILDS = 100_000
ROUNDS = 15
PAGES = {
    "newest, no filter": "/builds",
    "one repository": "/builds?repository=octo/repo-7",
    "a rare author (10 builds)": "/builds?author=rare-author",
    "a rare branch (1 build in 500)": "/builds?branch=branch-199",
    "failures": "/builds?state=failure",
    "deploys of one repository": "/builds?repository=octo/repo-3&job=deploy",
}
INDEXES = ("builds_by_branch", "builds_by_state_and_id", "builds_by_job", "builds_by_author")


def request_for(n: int) -> BuildRequest:
    branch = f"branch-{n % 200}" if n % 500 else "branch-199"
    return BuildRequest(
        repository=f"octo/repo-{n % 20}",
        sha=hashlib.sha1(str(n).encode()).hexdigest(),  # noqa: S324 - a commit id
        ref=f"refs/heads/{branch}",
        branch=branch,
        job=Job.DEPLOY if n % 10 == 0 else Job.TEST,
        message=f"commit {n}",
        author="rare-author" if n % (BUILDS // 10) == 0 else f"author-{n % 49}",
    )


def fill(database: Path) -> None:
    db = sqlite3.connect(database)
    values = []
    now = time.time() - BUILDS
    for n in range(1, BUILDS + 1):
        row = rows.build_values(request_for(n), None, now + n, None, now + n)
        values.append(row)
    db.executemany(rows.INSERT_BUILD.replace(" RETURNING id", ""), values)
    db.execute(
        "UPDATE builds SET state = CASE WHEN id % 7 = 0 THEN 'failure' ELSE 'success' END,"
        " description = 'done', finished_at = received_at + 1, started_at = received_at"
    )
    db.commit()
    db.close()


def plan(database: Path) -> str:
    db = sqlite3.connect(database)
    steps = db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM builds WHERE author = ? ORDER BY id DESC LIMIT 51",
        ("rare-author",),
    ).fetchall()
    db.close()
    return "; ".join(step[-1] for step in steps)


async def measure(settings: object) -> dict[str, float]:
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))  # type: ignore[arg-type]
    await client.start_server()
    found = {}
    try:
        for name, path in PAGES.items():
            times = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                response = await client.get(path)
                await response.content.read(1)  # the first byte of the body
                times.append((time.perf_counter() - started) * 1000)
                assert response.status == 200, (path, response.status)
                await response.read()
            found[name] = statistics.median(times)
    finally:
        await client.close()
    return found


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hobotnica-builds-page-") as work:
        raw = {
            "github": {"webhook_secret": "builds-page-bench-secret-0123", "catch_up": False},
            "storage": {"data_dir": str(Path(work) / "var"), "min_free": 0},
            "ui": {"public": True},
        }
        settings = parse_settings(raw, {}, base_dir=Path(work))
        store = await open_store(settings)  # the schema, migrated
        await store.close()
        database = next(Path(work, "var").glob("*.sqlite3"))
        started = time.perf_counter()
        fill(database)
        print(f"{BUILDS} builds written in {time.perf_counter() - started:.1f} s")
        await measure(settings)  # warm: templates compiled, the file in the page cache
        with_indexes = await measure(settings)
        plans = {"with": plan(database)}
        db = sqlite3.connect(database)
        for index in INDEXES:
            db.execute(f"DROP INDEX {index}")
        db.commit()
        db.close()
        without = await measure(settings)
        plans["without"] = plan(database)
    print(f"{'page':34} {'with indexes':>14} {'without':>10}  (time to first byte, median ms)")
    for name in PAGES:
        print(f"{name:34} {with_indexes[name]:14.1f} {without[name]:10.1f}")
    for which, found in plans.items():
        print(f"query plan for a rare author, {which} the indexes: {found}")


if __name__ == "__main__":
    asyncio.run(main())
