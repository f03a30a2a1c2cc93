"""Nothing answered 2xx is lost: the real daemon process under SIGKILL, a flaky GitHub, and SIGTERM.

- Chaos: a seeded stream of pushes over three repositories while the daemon is SIGKILLed at
  random moments and restarted on the same data directory, and GitHub answers some status posts
  with 502, a primary rate limit and a 429. Every accepted delivery ends in final statuses, no
  build runs more than twice, the database is intact, no build process is left, and GitHub's
  waits are honoured.
- Drain: SIGTERM while a build runs; `/health` turns 503, webhooks are still accepted and kept for
  the next instance, the running build finishes and its status is posted before the exit.

Both run on each store: the embedded SQLite file (whose integrity is SQLite's own check), and a
PostgreSQL database of the session's throwaway cluster (checked with amcheck, PostgreSQL's
verifier of indexes and tables). On either, what the store holds at the end is read with SQL.
"""

import asyncio
import contextlib
import random
import signal
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.daemon_process import (
    FINAL_STATES,
    DaemonProcess,
    TimedGitHub,
    processes_with_marker_prefix,
    serve_fake_github,
)
from tests.support.gitrepo import make_remote, makefile
from tests.support.postgres import session_cluster

REPOSITORIES = ("octo/alpha", "octo/beta", "octo/gamma")
PUSHES = 30
TAIL = 6  # the last pushes come in one burst after the last restart, into the rate limits
SEED = 20240611
SETTLE_TIMEOUT = 120.0
CLOCK_SLACK = 0.1


@dataclass(frozen=True)
class Backend:
    """The store a daemon of these tests keeps: SQLite under its data directory, or PostgreSQL."""

    name: str
    database_url: str | None

    def rows(self, data_dir: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[Any]:
        """Rows of one query (`?` placeholders), read while no daemon has the store open."""
        if self.database_url is None:
            with contextlib.closing(sqlite3.connect(data_dir / "hobotnica.sqlite3")) as db:
                return [tuple(row) for row in db.execute(sql, parameters)]
        with psycopg.connect(self.database_url, connect_timeout=10) as db:
            return list(db.execute(sql.replace("?", "%s"), parameters).fetchall())

    def damage(self, data_dir: Path) -> list[str]:
        """What the store's own checker finds wrong with it; [] when it is intact."""
        if self.database_url is None:
            found = [row[0] for row in self.rows(data_dir, "PRAGMA integrity_check")]
            return [] if found == ["ok"] else found
        # amcheck: every B-tree index is well formed and holds every row of its table
        # (heapallindexed), and every table's pages and tuples are sound (verify_heapam).
        with psycopg.connect(self.database_url, connect_timeout=10, autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            indexes = db.execute(
                "SELECT c.oid::regclass::text FROM pg_index AS i"
                " JOIN pg_class AS c ON c.oid = i.indexrelid"
                " JOIN pg_am AS am ON am.oid = c.relam"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE am.amname = 'btree' AND n.nspname = 'public'"
            ).fetchall()
            tables = db.execute(
                "SELECT c.oid::regclass::text FROM pg_class AS c"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname = 'public'"
            ).fetchall()
            assert indexes and tables, "the schema is there to check"
            problems = []
            for (index,) in indexes:
                try:
                    db.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
                except psycopg.Error as error:
                    problems.append(f"{index}: {error}")
            for (table,) in tables:
                for row in db.execute("SELECT * FROM verify_heapam(%s::regclass)", (table,)):
                    problems.append(f"{table}: {row}")
            return problems


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None)
    return Backend("postgresql", session_cluster().new_database())


def assert_store_at_rest(backend: Backend, data_dir: Path) -> None:
    """After a clean exit: the store is intact, no build is left queued or running, and no
    status is left waiting to be posted."""
    sqlite_file = (data_dir / "hobotnica.sqlite3").exists()
    assert sqlite_file == (backend.database_url is None), "the store is the one configured"
    assert backend.damage(data_dir) == []
    unfinished = backend.rows(
        data_dir, "SELECT id, state FROM builds WHERE state IN ('queued', 'running')"
    )
    assert unfinished == []
    waiting = backend.rows(data_dir, "SELECT build_id, state FROM outbox WHERE done_at IS NULL")
    assert waiting == []


@dataclass
class Push:
    repository: str
    sha: str
    branch: str
    delivery: str
    accepted: bool = False


def make_pushes(rng: random.Random, remotes: Path, ran: Path) -> list[Push]:
    """Real commits: each a Makefile whose test takes 0 to 0.3 s, some failing, some on main."""
    remote = {name: make_remote(remotes, name) for name in REPOSITORIES}
    pushes = []
    for index in range(PUSHES):
        repository = REPOSITORIES[index % len(REPOSITORIES)]
        on_main = rng.random() < 0.2
        branch = "main" if on_main else f"topic-{index}"
        test = f'@echo "$$HOBOTNICA_BUILD_ID $$HOBOTNICA_SHA" >> {ran}\n'
        test += f"@sleep {rng.choice(['0', '0.05', '0.1', '0.2', '0.3'])}"
        if rng.random() < 0.1:
            test += "\n@echo this one fails; exit 1"
        sha = remote[repository].commit(
            {"Makefile": makefile(test=test, deploy="@sleep 0.1"), "change.txt": str(index)},
            message=f"Change {index}",
            branch=branch,
        )
        pushes.append(Push(repository, sha, branch, str(uuid.uuid4())))
    return pushes


def rate_limited(now: float) -> dict[str, str]:
    """GitHub's primary rate limit, as it answers it: 403 with the quota spent."""
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-used": "5000",
        "x-ratelimit-reset": str(int(now) + 2),
        "x-ratelimit-resource": "core",
    }


class Chaos:
    """Pushes and SIGKILLs, interleaved: a failed push waits for the restart and is re-sent."""

    def __init__(self, daemon: DaemonProcess, rng: random.Random) -> None:
        self.daemon = daemon
        self.rng = rng
        self.up = asyncio.Event()
        self.up.set()
        self.sent = 0
        self.progress = asyncio.Condition()
        self.kills = 0
        self.failed_requests = 0
        self.redelivered = 0
        self.answers: Counter[int] = Counter()

    async def send(self, push: Push) -> None:
        """Send like GitHub: whether or not the daemon is there; on failure, redeliver."""
        for attempt in range(6):
            try:
                status, _answer = await self.daemon.push(
                    push.repository, push.sha, branch=push.branch, delivery=push.delivery
                )
            except (aiohttp.ClientError, TimeoutError):
                # Refused or cut off: the daemon is down (the killer clears `up` before it
                # kills). Redeliver with the same id once it is back.
                self.failed_requests += 1
                async with asyncio.timeout(60):
                    await self.up.wait()
                continue
            self.answers[status] += 1
            if 200 <= status < 300:
                push.accepted = True
                self.redelivered += attempt > 0
                return
        # Never accepted: dropped from the expectations (push.accepted stays False).

    async def wait_sent(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.sent >= count)

    async def pusher(self, pushes: list[Push]) -> None:
        for push in pushes:
            await self.send(push)
            async with self.progress:
                self.sent += 1
                self.progress.notify_all()
            await asyncio.sleep(self.rng.uniform(0.05, 0.25))

    async def killer(self, after: list[int]) -> None:
        for count in after:
            await self.wait_sent(count)
            await asyncio.sleep(self.rng.uniform(0.0, 0.4))
            self.up.clear()
            await self.daemon.kill()
            self.kills += 1
            await self.daemon.start()
            self.up.set()


def kill_points(rng: random.Random, kills: int) -> list[int]:
    """After how many pushes each SIGKILL comes: one in each slice of the stream."""
    edges = [3 + (PUSHES - TAIL - 4) * k // kills for k in range(kills + 1)]
    return [rng.randrange(edges[k], edges[k + 1]) for k in range(kills)]


def last_posts(fake: TimedGitHub) -> dict[tuple[str, str], str]:
    last: dict[tuple[str, str], str] = {}
    for post in fake.statuses:
        last[(post.sha, post.context)] = post.state
    return last


def settled(builds: list[dict[str, Any]], pushes: list[Push], fake: TimedGitHub) -> bool:
    if fake.timed_script or fake.scripted:
        return False
    by_sha = {(b["repository"], b["sha"]) for b in builds if b["job"] == "test"}
    if any((p.repository, p.sha) not in by_sha for p in pushes if p.accepted):
        return False
    if any(b["state"] not in FINAL_STATES for b in builds):
        return False
    last = last_posts(fake)
    posted = {(s.target_url, s.state) for s in fake.statuses}
    for build in builds:
        key = (build["sha"], build["context"])
        if (
            build["state"] in ("success", "failure")
            and (build["url"], build["state"]) not in posted
        ):
            return False
        if key in last and last[key] not in FINAL_STATES:
            return False
    return True


async def test_chaos_sigkill_and_a_flaky_github_lose_nothing(
    tmp_path: Path, backend: Backend
) -> None:
    rng = random.Random(SEED)
    ran = tmp_path / "ran.txt"
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    pushes = make_pushes(rng, remotes, ran)
    data_dir = tmp_path / "var"
    kills = kill_points(rng, rng.choice([3, 4]))
    flaky_after = sorted(rng.sample(range(2, PUSHES - TAIL), 3))

    async with serve_fake_github() as fake:
        daemon = DaemonProcess(
            "chaos",
            tmp_path,
            fake=fake,
            git_url=remotes.as_uri(),
            data_dir=data_dir,
            projects=[{"repository": name} for name in REPOSITORIES],
            database_url=backend.database_url,
        )
        try:
            await daemon.start()
            chaos = Chaos(daemon, rng)

            async def flaky() -> None:
                for count in flaky_after:
                    await chaos.wait_sent(count)
                    for _ in range(rng.choice([1, 2])):
                        fake.script(502)

            async with asyncio.timeout(120):
                stream = pushes[:-TAIL]
                await asyncio.gather(chaos.pusher(stream), chaos.killer(kills), flaky())
            assert chaos.kills == len(kills)
            assert chaos.redelivered, "some push met a dead daemon and was delivered again"
            # After the last restart GitHub limits us, first by the primary rate limit, then
            # by a secondary one, while a burst of pushes has several statuses waiting.
            fake.script(403, rate_limited)
            fake.script(429, lambda _now: {"retry-after": "1"})
            async with asyncio.timeout(60):
                await asyncio.gather(*(chaos.send(push) for push in pushes[-TAIL:]))

            accepted = [p for p in pushes if p.accepted]
            assert len(accepted) == PUSHES, "every push is accepted, if need be on redelivery"

            deadline = time.monotonic() + SETTLE_TIMEOUT
            builds = await daemon.all_builds()
            while not settled(builds, pushes, fake) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                builds = await daemon.all_builds()
            leftovers = processes_with_marker_prefix(daemon.public_url)
            daemon.signal(signal.SIGTERM)
            exit_code = await daemon.wait_exit(60)
            leftovers += processes_with_marker_prefix(daemon.public_url)
        finally:
            await daemon.close()

    log = daemon.log_tail(60)
    # Every accepted delivery built exactly one test build, and every build ended.
    tests_by_commit = Counter((b["repository"], b["sha"]) for b in builds if b["job"] == "test")
    for push in accepted:
        assert tests_by_commit[(push.repository, push.sha)] == 1, (push, log)
    unfinished = [(b["id"], b["state"], b["description"]) for b in builds]
    unfinished = [b for b in unfinished if b[1] not in FINAL_STATES]
    assert not unfinished, log
    assert max(b["attempt"] for b in builds) <= 2
    runs = Counter(line.split()[0] for line in ran.read_text().splitlines())
    assert max(runs.values()) <= 2, runs

    # GitHub's last word on every commit and context is final, and a build never contradicts
    # itself (a state posted again after a crash is the same state).
    last = last_posts(fake)
    assert not {k: v for k, v in last.items() if v not in FINAL_STATES}, log
    for build in builds:
        if build["state"] in ("success", "failure"):
            assert last.get((build["sha"], build["context"])) == build["state"], build
    finals: dict[str, set[str]] = defaultdict(set)
    for post in fake.statuses:
        if post.state in FINAL_STATES:
            finals[post.target_url].add(post.state)
    assert not {url: states for url, states in finals.items() if len(states) > 1}
    deploys = [b for b in builds if b["job"] == "deploy"]
    assert deploys, "some pushes to main passed and deployed"

    # The process ended cleanly and left the database intact and no build behind.
    assert exit_code == 0, log
    assert_store_at_rest(backend, data_dir)
    assert not leftovers

    # GitHub's waits were honoured: nothing was posted before a rate limit allowed it.
    arrivals = sorted(fake.arrivals, key=lambda a: a.at)
    answered = Counter(a.answered for a in arrivals)
    assert answered[403] == 1 and answered[429] == 1 and answered[502] >= 3, answered
    too_early = []
    for index, arrival in enumerate(arrivals[:-1]):
        following = arrivals[index + 1]
        if arrival.answered == 429:
            waited = following.at - arrival.at
            if waited < 1.0 - CLOCK_SLACK:
                too_early.append(f"posted {waited:.3f} s after a 429 with retry-after: 1")
        if arrival.answered == 403:
            early = float(arrival.headers["x-ratelimit-reset"]) - following.at
            if early > CLOCK_SLACK:
                too_early.append(f"posted {early:.3f} s before a 403's x-ratelimit-reset")
    assert not too_early, too_early


async def test_sigterm_drains_keeps_new_webhooks_and_reports_before_exit(
    tmp_path: Path, backend: Backend
) -> None:
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    remote = make_remote(remotes, "octo/app")
    release = tmp_path / "release"
    blocking = makefile(test=f"@echo started\n@while [ ! -e {release} ]; do sleep 0.02; done")
    slow_sha = remote.commit({"Makefile": blocking}, message="Slow", branch="slow")
    later_sha = remote.commit({"Makefile": makefile(test="@echo fast")}, "Fast", branch="later")
    data_dir = tmp_path / "var"

    async with serve_fake_github() as fake:
        daemon = DaemonProcess(
            "drain",
            tmp_path,
            fake=fake,
            git_url=remotes.as_uri(),
            data_dir=data_dir,
            projects=[{"repository": "octo/app"}],
            database_url=backend.database_url,
        )
        try:
            await daemon.start()
            status, answer = await daemon.push("octo/app", slow_sha, branch="slow")
            assert status == 202
            (slow_id,) = answer["builds"]
            async with asyncio.timeout(30):
                while (await daemon.build(slow_id) or {}).get("state") != "running":
                    await asyncio.sleep(0.02)

            daemon.signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                while await daemon.health() != 503:
                    await asyncio.sleep(0.02)
            status, answer = await daemon.push("octo/app", later_sha, branch="later")
            assert status == 202, answer
            (later_id,) = answer["builds"]
            later = await daemon.build(later_id)
            assert later is not None and later["state"] == "queued"
            assert daemon.running()

            release.touch()
            assert await daemon.wait_exit(30) == 0, daemon.log_tail()
            # The final status reached GitHub before the process was gone.
            slow_url = f"{daemon.public_url}/builds/{slow_id}"
            slow_posts = [s for s in fake.statuses if s.target_url == slow_url]
            assert slow_posts and slow_posts[-1].state == "success", slow_posts
            assert fake.last_state(slow_sha) == "success"

            # The drain kept the late push, queued and unbuilt, for the next instance.
            rows = backend.rows(  # nobody else has the store open
                data_dir, "SELECT state, attempt FROM builds WHERE id = ?", (later_id,)
            )
            assert rows == [("queued", 0)]

            await daemon.start()
            async with asyncio.timeout(30):
                while (await daemon.build(later_id) or {}).get("state") not in FINAL_STATES:
                    await asyncio.sleep(0.05)
            later = await daemon.build(later_id)
            assert later is not None
            assert (later["state"], later["attempt"]) == ("success", 1)
            await fake.wait_until(lambda: fake.last_state(later_sha) == "success", timeout=30)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait_exit(30) == 0, daemon.log_tail()
            assert_store_at_rest(backend, data_dir)
        finally:
            await daemon.close()
