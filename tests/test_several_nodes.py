"""Several nodes on one PostgreSQL, behind real nginx, under load, while the node running a build
hangs (SIGSTOP, until requests nginx sent it wait unread), is SIGKILLed and started again.

Three `hobotnica serve` processes (each its own data directory, port and node name) share one
database of the session's throwaway cluster; nginx runs the shipped `nginx/hobotnica-nodes.conf`
(its upstream and listen addresses moved to loopback, a throwaway certificate). GitHub is the
one fake. Three repositories get some two hundred signed deliveries: bursts of pushes to one
branch, a slower trickle to another, single pushes to topic branches, pull requests (opened,
then synchronized), pushes to the deploy branch, and deliveries sent by "GitHub's Redeliver" to
two nodes directly at once. Every build notes in a file outside the workspaces when its `make
test` or `make deploy` started and ended, on which node, and (for deploys) which commit it
deployed.

Then, as a user would see it: every webhook sent through nginx was answered 2xx, also while a
node was dying; a delivery sent to two nodes is one delivery; each commit has one final status
per context and none is left `pending`; one repository's builds never ran at the same time
(on any nodes), deploys never went backwards; each node answers the page, the raw log and the
live log of builds that ran on the others, the build interrupted by the SIGKILL among them; and
no build process is left behind.
"""

import asyncio
import itertools
import json
import random
import signal
import ssl
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import SECRET
from tests.support.daemon_process import (
    DaemonProcess,
    TimedGitHub,
    free_port,
    processes_with_marker_prefix,
    query,
    serve_fake_github,
)
from tests.support.gitrepo import NewCommit, commit_many, make_remote, makefile
from tests.support.postgres import session_cluster
from tests.support.privileges import in_ci
from tests.support.webhooks import headers, pull_request_payload, push_payload
from tests.test_blue_green import NGINX, certificate, nginx

SHIPPED_NGINX_CONF = Path(__file__).parent.parent / "nginx" / "hobotnica-nodes.conf"
SHIPPED_UPSTREAMS = ("10.0.0.11:8081", "10.0.0.12:8081", "10.0.0.13:8081")
NODES = 3
REPOSITORIES = ("octo/alpha", "octo/beta", "octo/gamma")
LONG_REPOSITORY = "octo/gamma"  # its first build runs until released: the node it runs on dies
SEED = 20261203
BURSTS, BURST = 2, 20  # per repository: bursts of pushes to one branch
# Per repository: pushes to one branch about as far apart as a "Queued" is held back before
# it is posted (runner.store.interface.PENDING_HOLD), so a push often supersedes a build just
# as another node's reporter posts its "Queued".
TRICKLE = 6
TOPICS = 8  # per repository: single pushes to branches of their own; half sent to two nodes
MAINS = 6  # per repository: pushes to the deploy branch
PULLS = 2  # per repository: pull requests, opened then synchronized
IN_FLIGHT = 8  # webhooks on their way at once
KILL_AFTER = 0.35  # of the stream sent
RELEASE_AFTER = 0.7
SETTLE_TIMEOUT = 60.0
BASE_PUSHED_AT = 1_760_000_000
FINAL = frozenset({"success", "failure", "error"})

RECORD_SCRIPT = """\
# record.sh JOB: note when this build's make target started and ended (also when it is stopped),
# which build and attempt it was, its commit, and the node (the daemon's HOME is the node's).
# While it runs it holds a lock on its repository's lock file: a run that finds the lock taken
# notes an overlap. The kernel lets go of the lock when the last process holding it is gone, so
# this also sees a run that was killed before it could note its end.
line() {{
  echo "$1 $JOB $HOBOTNICA_REPOSITORY $HOBOTNICA_BUILD_ID $HOBOTNICA_ATTEMPT $HOBOTNICA_SHA" \\
    "${{HOME##*/}} $(date +%s.%N)" >> {ran}
}}
JOB=$1
trap 'line end; exit 143' TERM INT HUP
exec 9>> {lock}
flock -n 9 || line overlap
line start
if [ "$JOB" = test ] && [ "$(cat wait-for-release)" = yes ]; then
  i=0
  while [ ! -e {release} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
elif [ "$JOB" = test ]; then
  sleep "$(cat duration)"
else
  sleep 0.2
fi
line end
"""
MAKEFILE = makefile(
    test='@echo "log-of-build-$$HOBOTNICA_BUILD_ID-attempt-$$HOBOTNICA_ATTEMPT"\n'
    "@sh record.sh test\n"
    '@if [ "$$(cat fails)" = yes ]; then echo "this commit fails on purpose"; exit 1; fi',
    deploy='@echo "log-of-build-$$HOBOTNICA_BUILD_ID-attempt-$$HOBOTNICA_ATTEMPT"\n'
    "@sh record.sh deploy",
)


# -- the deliveries ----------------------------------------------------------------------------


@dataclass
class Delivery:
    kind: str  # long, burst, trickle, topic, main, pull
    repository: str
    branch: str
    sha: str = ""
    event: str = "push"
    action: str = "opened"
    number: int = 0
    pushed_at: int = 0  # GitHub's order of the pushes: the stream's
    pause: float = 0.05  # after sending it, before the next
    to_two_nodes: bool = False
    guid: str = field(default_factory=lambda: str(uuid.uuid4()))
    answers: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)

    def body(self) -> bytes:
        if self.event == "pull_request":
            payload = pull_request_payload(
                self.repository, self.sha, number=self.number, action=self.action,
                branch=self.branch,
            )  # fmt: skip
            stamp = time.gmtime(self.pushed_at)
            payload["pull_request"]["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)
        else:
            payload = push_payload(
                self.repository, self.sha, branch=self.branch, pushed_at=self.pushed_at
            )
        return json.dumps(payload).encode()

    @property
    def accepted(self) -> bool:
        return any(200 <= status < 300 for _, status, _ in self.answers)


def plan_deliveries(rng: random.Random, remotes: Path, ran: Path, release: Path) -> list[Delivery]:
    """The stream, in GitHub's order, with real commits behind every delivery."""
    per_repository: dict[str, list[Delivery]] = {}
    for repository in REPOSITORIES:
        blocks: list[list[Delivery]] = [
            [Delivery("burst", repository, f"burst-{b}", pause=0.01) for _ in range(BURST)]
            for b in range(BURSTS)
        ]
        trickle = [Delivery("trickle", repository, "trickle") for _ in range(TRICKLE)]
        for delivery in trickle:
            delivery.pause = rng.uniform(0.1, 0.3)
        blocks.append(trickle)
        blocks += [[Delivery("topic", repository, f"topic-{t}")] for t in range(TOPICS)]
        blocks += [[Delivery("main", repository, "main")] for _ in range(MAINS)]
        for number in range(1, PULLS + 1):
            pull = [
                Delivery("pull", repository, f"pr-{number}", event="pull_request", number=number,
                         action=action)
                for action in ("opened", "synchronize")
            ]  # fmt: skip
            blocks.append(pull)
        rng.shuffle(blocks)
        per_repository[repository] = [d for block in blocks for d in block]
    stream = [Delivery("long", LONG_REPOSITORY, "long")]
    while any(per_repository.values()):
        repository = rng.choice([r for r, left in per_repository.items() if left])
        stream.append(per_repository[repository].pop(0))
    topics = [d for d in stream if d.kind == "topic"]
    for delivery in rng.sample(topics, len(topics) // 2):
        delivery.to_two_nodes = True
    for index, delivery in enumerate(stream):
        delivery.pushed_at = BASE_PUSHED_AT + index

    for repository in REPOSITORIES:
        remote = make_remote(remotes, repository)
        lock = ran.with_name(f"{repository.replace('/', '-')}.lock")
        record = RECORD_SCRIPT.format(ran=ran, release=release, lock=lock)
        mine = [d for d in stream if d.repository == repository]
        commits = []
        for index, delivery in enumerate(mine):
            files = {"Makefile": MAKEFILE, "record.sh": record, "n.txt": f"{repository} {index}"}
            files["duration"] = rng.choice(["0", "0.05", "0.1", "0.2"])
            files["wait-for-release"] = "yes" if delivery.kind == "long" else "no"
            fails = delivery.kind in ("topic", "main") and rng.random() < 0.15
            files["fails"] = "yes" if fails else "no"
            also = (f"refs/pull/{delivery.number}/head",) if delivery.kind == "pull" else ()
            commits.append(NewCommit(delivery.branch, files, f"Change {index}", also))
        for delivery, sha in zip(mine, commit_many(remote, commits), strict=True):
            delivery.sha = sha
    return stream


# -- what the builds noted -----------------------------------------------------------------------


@dataclass
class Run:
    """One attempt of one build's make target, as `record.sh` noted it. A time can be missing:
    the `date` of a run being stopped may be ended with it (the stop ends every process of the
    build); the repository's lock still tells whether it overlapped another run."""

    job: str
    repository: str
    build_id: int
    attempt: int
    sha: str
    node: str
    start: float | None
    end: float | None = None
    ended: bool = False  # its end was noted (with a time or without)


def read_runs(ran: Path) -> tuple[dict[tuple[int, int], Run], list[str]]:
    """The runs noted, by (build id, attempt), and the overlaps noted."""
    runs: dict[tuple[int, int], Run] = {}
    overlaps = []
    text = ran.read_text() if ran.exists() else ""
    for line in text.splitlines():
        fields = line.split()
        what, job, repository, build_id, attempt, sha, home = fields[:7]
        at = float(fields[7]) if len(fields) > 7 else None
        key = (int(build_id), int(attempt))
        if what == "start":
            node = home.removesuffix("-home")
            runs[key] = Run(job, repository, key[0], key[1], sha, node, at)
        elif what == "overlap":
            overlaps.append(line)
        elif key in runs and not runs[key].ended:
            # (An end without a start: stopped before it began. Two ends: stopped right at
            # its end; the first counts.)
            runs[key].end, runs[key].ended = at, True
    return runs, overlaps


# -- nginx in front of the nodes -----------------------------------------------------------------


def nginx_conf(root: Path, node_ports: list[int], https_port: int, http_port: int) -> Path:
    """The shipped example inside a minimal main context: its nodes and ports on loopback."""
    root.mkdir()
    cert, key = certificate(root)
    text = SHIPPED_NGINX_CONF.read_text()
    replacements = dict(zip(SHIPPED_UPSTREAMS, (f"127.0.0.1:{p}" for p in node_ports), strict=True))
    replacements |= {
        "listen [::]:80;": "",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/ssl/certs/ci.example.com.pem": str(cert),
        "/etc/ssl/private/ci.example.com.key": str(key),
    }
    for old, new in replacements.items():
        assert old in text, f"the shipped {SHIPPED_NGINX_CONF.name} has no {old!r} any more"
        text = text.replace(old, new)
    (root / "hobotnica.conf").write_text(text)
    (root / "logs").mkdir()
    conf = root / "nginx.conf"
    conf.write_text(
        f"pid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n  access_log off;\n  include {root}/hobotnica.conf;\n}}\n"
    )
    return conf


@pytest.fixture
def nginx_here() -> None:
    if not Path(NGINX).exists():
        message = "nginx is not installed (Debian: apt-get install nginx; .ci/run installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


# -- the traffic -------------------------------------------------------------------------------


class Traffic:
    """Sends the stream like GitHub: through nginx, or one delivery to two nodes at once."""

    def __init__(
        self, site: str, session: aiohttp.ClientSession, nodes: list[DaemonProcess], seed: int
    ) -> None:
        self.site = site
        self.session = session
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.sent = 0
        self.progress = asyncio.Condition()

    async def wait_sent(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.sent >= count)

    async def send_all(self, stream: list[Delivery]) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        sending: list[asyncio.Task[None]] = []

        async def send(delivery: Delivery) -> None:
            try:
                if delivery.to_two_nodes:
                    await self.to_two_nodes(delivery)
                else:
                    await self.through_nginx(delivery)
            finally:
                slots.release()

        for delivery in stream:
            await slots.acquire()
            task = asyncio.create_task(send(delivery))
            sending.append(task)
            async with self.progress:
                self.sent += 1
                self.progress.notify_all()
            await asyncio.sleep(delivery.pause)
        try:
            await asyncio.gather(*sending)
        finally:  # the test failed meanwhile: nothing goes on sending
            for task in sending:
                task.cancel()

    async def through_nginx(self, delivery: Delivery) -> None:
        await self._post(self.session, self.site, "nginx", delivery)

    async def to_two_nodes(self, delivery: Delivery) -> None:
        """GitHub's Redeliver while the first delivery is still on its way, to another node.
        A node that is down meanwhile: the delivery goes again to the third (only one node
        is ever down)."""

        async def deliver(node: DaemonProcess, other: DaemonProcess) -> None:
            if not await self._post(node.session, node.base, node.name, delivery):
                third = next(n for n in self.nodes if n is not node and n is not other)
                await self._post(third.session, third.base, third.name, delivery)

        first, second = self.rng.sample([n for n in self.nodes if n.running()], 2)
        await asyncio.gather(deliver(first, second), deliver(second, first))

    async def _post(
        self, session: aiohttp.ClientSession, base: str, where: str, delivery: Delivery
    ) -> bool:
        """One request; whether it got an HTTP answer."""
        body = delivery.body()
        hdrs = headers(body, SECRET, delivery.event, delivery.guid)
        try:
            async with session.post(f"{base}/webhooks/github", data=body, headers=hdrs) as answer:
                text = await answer.text()
                parsed = json.loads(text) if text.startswith("{") else {"text": text}
                delivery.answers.append((where, answer.status, parsed))
                return True
        except (aiohttp.ClientError, TimeoutError) as error:
            delivery.answers.append((where, 0, {"error": repr(error)}))
            return False


# -- the test ----------------------------------------------------------------------------------


async def poll(what: str, check: Any, timeout: float, interval: float = 0.1) -> Any:
    """`await check()` until it returns something true (bounded); that value."""
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)
    return found


async def test_three_nodes_behind_nginx_survive_a_sigkill_under_load(
    tmp_path: Path, nginx_here: None
) -> None:
    started_at = time.monotonic()
    database = session_cluster().new_database()
    rng = random.Random(SEED)
    ran, release = tmp_path / "ran.txt", tmp_path / "release"
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    stream = plan_deliveries(rng, remotes, ran, release)
    https_port, http_port = free_port(), free_port()
    site = f"https://127.0.0.1:{https_port}"

    async with serve_fake_github() as fake:
        nodes = [
            DaemonProcess(
                f"node-{n}",
                tmp_path,
                fake=fake,
                git_url=remotes.as_uri(),
                data_dir=tmp_path / f"node-{n}" / "var",
                projects=[{"repository": name} for name in REPOSITORIES],
                public_url=site,  # every node's links go through nginx
                database_url=database,
                node_name=f"node-{n}",
                github={"statuses_per_minute": 100_000},
            )
            for n in range(1, NODES + 1)
        ]
        by_name = {node.name: node for node in nodes}
        conf = nginx_conf(tmp_path / "nginx", [n.port for n in nodes], https_port, http_port)
        started = nginx(conf)
        assert started.returncode == 0, started.stderr
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        connector = aiohttp.TCPConnector(ssl=insecure, limit=IN_FLIGHT * 2)
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            ) as session:
                await asyncio.gather(*(node.start() for node in nodes))
                traffic = Traffic(site, session, nodes, SEED)
                killed = await run_the_stream(traffic, stream, ran, release, by_name)
                await poll(
                    "every build ended and every status was sent",
                    at_rest(database),
                    SETTLE_TIMEOUT,
                    0.3,
                )
                leftovers = processes_with_marker_prefix(site)
                builds = await stored_builds(database)
                runs, overlaps = read_runs(ran)
                await check_pages_on_every_node(nodes, builds, runs, killed)
        finally:
            nginx(conf, "-s", "quit")
            for node in nodes:
                await node.close()

    print(
        f"\n{sum(len(d.answers) for d in stream)} requests for {len(stream)} deliveries,"
        f" {len(builds)} builds, runs per node"
        f" {dict(Counter(run.node for run in runs.values()))},"
        f" {time.monotonic() - started_at:.1f} s"
    )
    check_answers(stream)
    check_builds_and_statuses(stream, builds, fake, site)
    check_runs(stream, builds, runs, overlaps, killed)
    assert leftovers == [], "no build process outlives the test's builds"


@dataclass(frozen=True)
class Killed:
    node: str
    build_id: int


async def run_the_stream(
    traffic: Traffic,
    stream: list[Delivery],
    ran: Path,
    release: Path,
    by_name: dict[str, DaemonProcess],
) -> Killed:
    """The stream; meanwhile the node running the long build is SIGKILLed and started again,
    and later the long build (run again by some node) is let go."""
    long = stream[0]

    async def long_started() -> Run | None:
        return next((r for r in read_runs(ran)[0].values() if r.sha == long.sha), None)

    async def killer() -> Killed:
        run: Run = await poll("the long build started", long_started, 30.0)
        await traffic.wait_sent(int(len(stream) * KILL_AFTER))
        assert not read_runs(ran)[0][(run.build_id, run.attempt)].ended, "it still runs"
        victim = by_name[run.node]
        # It hangs first, then dies: requests nginx sent it are on their way when it dies.
        victim.signal(signal.SIGSTOP)

        async def requests_wait_in_it() -> bool:
            return unread_connections(victim.port) > 0

        await poll("requests wait in the stopped node", requests_wait_in_it, 10.0, 0.01)
        await victim.kill()
        await victim.start()
        await traffic.wait_sent(int(len(stream) * RELEASE_AFTER))
        release.touch()
        return Killed(run.node, run.build_id)

    async with asyncio.timeout(90), asyncio.TaskGroup() as tasks:  # one fails: both end
        tasks.create_task(traffic.send_all(stream))
        killing = tasks.create_task(killer())
    return killing.result()


def unread_connections(port: int) -> int:
    """Connections to a loopback port whose received bytes nobody has read yet."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        unread = int(fields[4].split(":")[1], 16)
        count += local_port == port and fields[3] == "01" and unread > 0  # 01: established
    return count


def at_rest(database: str) -> Any:
    async def check() -> bool:
        (row,) = await query(
            database,
            "SELECT (SELECT count(*) FROM builds WHERE state IN ('queued', 'running')),"
            " (SELECT count(*) FROM outbox WHERE done_at IS NULL)",
        )
        return row == (0, 0)

    return check


@dataclass(frozen=True)
class Stored:
    id: int
    repository: str
    job: str
    sha: str
    state: str
    description: str
    attempt: int

    @property
    def context(self) -> str:
        return f"hobotnica/{self.job}"


async def stored_builds(database: str) -> list[Stored]:
    rows = await query(
        database,
        "SELECT id, repository, job, sha, state, description, attempt FROM builds ORDER BY id",
    )
    return [Stored(*row) for row in rows]


# -- what a user sees ----------------------------------------------------------------------------


def check_answers(stream: list[Delivery]) -> None:
    """Through nginx every webhook got a 2xx, even while a node died; a delivery sent to two
    nodes at once was stored once (one 202, the other 200 "duplicate")."""
    refused = [(d.guid, d.answers) for d in stream if not d.to_two_nodes and not d.accepted]
    assert refused == []
    pairs = [d for d in stream if d.to_two_nodes]
    for delivery in pairs:
        answered = [(status, body) for _, status, body in delivery.answers if status]
        statuses = sorted(status for status, _ in answered)
        assert statuses == [200, 202], delivery.answers
        assert [body.get("duplicate") for status, body in answered if status == 200] == [True]
        assert len({where for where, status, _ in delivery.answers if status}) == 2


def check_builds_and_statuses(
    stream: list[Delivery], builds: list[Stored], fake: TimedGitHub, site: str
) -> None:
    tests = Counter((b.repository, b.sha) for b in builds if b.job == "test")
    assert all(tests[(d.repository, d.sha)] == 1 for d in stream), "one test build a delivery"
    assert sum(tests.values()) == len(stream)
    assert all(b.state in FINAL for b in builds)
    assert max(b.attempt for b in builds) <= 2

    posts = defaultdict(list)
    for post in fake.statuses:
        posts[(post.repository, post.sha, post.context)].append(post)
    left_pending = {
        key: [(p.state, p.description, p.target_url) for p in mine]
        for key, mine in posts.items()
        if mine[-1].state not in FINAL
    }
    assert left_pending == {}
    for build in builds:
        url = f"{site}/builds/{build.id}"
        mine = posts.get((build.repository, build.sha, build.context), [])
        finals = {(p.state, p.target_url) for p in mine if p.state in FINAL}
        if not mine:  # GitHub never heard of it: only a build superseded while it waited
            assert build.state == "error" and build.description.startswith("Superseded"), build
            continue
        assert finals == {(build.state, url)}, (
            build,
            [(p.state, p.description, p.target_url) for p in mine],
        )
    deploys = [b for b in builds if b.job == "deploy"]
    assert {b.repository for b in deploys if b.state == "success"} == set(REPOSITORIES)


def check_runs(
    stream: list[Delivery],
    builds: list[Stored],
    runs: dict[tuple[int, int], Run],
    overlaps: list[str],
    killed: Killed,
) -> None:
    by_id = {b.id: b for b in builds}
    assert all(by_id[run.build_id].sha == run.sha for run in runs.values())
    # Every make target noted its end, but the one whose node was killed: its processes were
    # ended with the node's cgroup (SIGKILL, no trap runs).
    unended = [key for key, run in runs.items() if not run.ended]
    assert set(unended) <= {(killed.build_id, 1)}, unended

    # One repository's builds, tests and deploys, never ran at the same time on any nodes:
    # no run found its repository's lock taken, and no two noted times cross.
    assert overlaps == []
    crossed = []
    for repository in REPOSITORIES:
        timed = [r for r in runs.values() if r.repository == repository and r.start and r.end]
        timed.sort(key=lambda r: r.start or 0)
        for before, after in itertools.pairwise(timed):
            if (after.start or 0) < (before.end or 0):
                crossed.append((before, after))
    assert crossed == []

    # Deploys never went backwards: each repository's deploys ran in push order.
    order = {(d.repository, d.sha): index for index, d in enumerate(stream)}
    for repository in REPOSITORIES:
        deployed = [r for r in runs.values() if r.job == "deploy" and r.repository == repository]
        assert all(r.start for r in deployed), "a deploy is never stopped as it starts"
        deployed.sort(key=lambda r: r.start or 0)
        pushed = [order[(repository, r.sha)] for r in deployed]
        assert pushed == sorted(set(pushed)), (repository, pushed)

    # The build on the killed node ran once more (its id kept), to success.
    first, again = runs.get((killed.build_id, 1)), runs.get((killed.build_id, 2))
    assert first is not None and first.node == killed.node
    assert again is not None
    assert (by_id[killed.build_id].state, by_id[killed.build_id].attempt) == ("success", 2)


async def check_pages_on_every_node(
    nodes: list[DaemonProcess],
    builds: list[Stored],
    runs: dict[tuple[int, int], Run],
    killed: Killed,
) -> None:
    """Each node shows builds that ran on others: page, raw log and live log, with the log."""
    last_run = {run.build_id: run for run in sorted(runs.values(), key=lambda r: r.attempt)}
    by_id = {b.id: b for b in builds}
    for node in nodes:
        elsewhere = [r for r in last_run.values() if r.node != node.name]
        sample = [r for r in elsewhere if r.job == "test"][-2:]
        sample += [r for r in elsewhere if r.job == "deploy"][-1:]
        sample += [last_run[killed.build_id]]
        assert len({r.build_id for r in sample}) >= 3, "other nodes ran builds"
        for run in sample:
            build = by_id[run.build_id]
            marker = f"log-of-build-{build.id}-attempt-{build.attempt}"
            page, raw, live = await asyncio.gather(
                read(node, f"/builds/{build.id}"),
                read(node, f"/api/builds/{build.id}/log"),
                read(node, f"/builds/{build.id}/events"),
            )
            for what, text in (("page", page), ("raw log", raw), ("live log", live)):
                assert marker in text, (node.name, what, build, text[-2000:])
            assert "event: end" in live
            if build.id == killed.build_id:  # its log started over with the second attempt
                assert "attempt-1" not in raw


async def read(node: DaemonProcess, path: str) -> str:
    """A GET answered 200 (a live log ends by itself once its build is final)."""
    async with asyncio.timeout(15):
        async with node.session.get(f"{node.base}{path}") as response:
            assert response.status == 200, (node.name, path, response.status)
            return await response.text()
