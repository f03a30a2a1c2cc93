"""The queue's rules without a store, a clock or a process (`runner.scheduling.rules`).

First each rule on its own, then a hypothesis state machine that drives random sequences of
pushes, late deliveries, pull requests, claims, finishes, crashes, cancels and re-runs through
the rules — applying each decision to rows in memory, as the store does — and checks the
queue's promises after every step and once everything has run:
- at most one running build per repository;
- every build ends exactly once, and a final build never changes;
- the newest push of every branch ends built (or cancelled, or lost to a daemon twice);
- no deploy starts on a commit older than one already deployed.
"""

import dataclasses
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runner.core.models import BuildRequest, BuildState, Job
from runner.scheduling import rules
from runner.scheduling.rules import BuildFacts

REPO = "octo/app"


def push(sha: str, *, branch: str = "main", pushed_at: float | None = None, **extra: object):  # type: ignore[no-untyped-def]
    return BuildRequest(
        repository=REPO,
        sha=sha,
        ref=f"refs/heads/{branch}",
        branch=branch,
        pushed_at=pushed_at,
        **extra,  # type: ignore[arg-type]
    )


def facts(build_id: int, request: BuildRequest, state: BuildState, **extra: object) -> BuildFacts:
    return BuildFacts(build_id, request, state, **extra)  # type: ignore[arg-type]


# -- each rule ---------------------------------------------------------------------------------


def test_a_newer_push_supersedes_its_branchs_queued_builds_and_only_those() -> None:
    queued = [
        facts(1, push("a" * 40), BuildState.QUEUED, heard=True),
        facts(2, push("b" * 40, branch="other"), BuildState.QUEUED),
        facts(3, push("c" * 40), BuildState.QUEUED, heard=False),
    ]
    arrival = rules.arrive(
        push("d" * 40), later_push=None, queued=queued, running=[], stop_running=True, now=100.0
    )
    assert [(s.build_id, s.tell_github) for s in arrival.supersede] == [(1, True), (3, False)]
    assert {s.reason for s in arrival.supersede} == {"Superseded by ddddddd"}
    assert arrival.not_before == 100.0 + rules.SETTLE_SECONDS
    assert arrival.born_superseded_by is None


def test_a_lone_push_waits_for_nothing() -> None:
    arrival = rules.arrive(
        push("a" * 40), later_push=None, queued=[], running=[], stop_running=True, now=5.0
    )
    assert arrival == rules.Arrival()


def test_a_late_delivery_of_an_older_push_is_born_superseded_and_touches_nothing() -> None:
    queued = [facts(1, push("b" * 40), BuildState.QUEUED)]
    arrival = rules.arrive(
        push("a" * 40, pushed_at=1.0),
        later_push="b" * 40,
        queued=queued,
        running=[facts(2, push("c" * 40), BuildState.RUNNING)],
        stop_running=True,
        now=5.0,
    )
    assert arrival == rules.Arrival(born_superseded_by="b" * 40)


def test_a_newer_push_stops_the_running_test_of_its_branch_when_asked_to() -> None:
    running = [
        facts(1, push("a" * 40), BuildState.RUNNING),
        facts(2, push("b" * 40, branch="other"), BuildState.RUNNING),
        facts(3, push("c" * 40, job=Job.DEPLOY), BuildState.RUNNING),  # a deploy never stops
    ]
    asked = rules.arrive(
        push("d" * 40), later_push=None, queued=[], running=running, stop_running=True, now=0.0
    )
    assert asked.stop_running == ((1, "Superseded by ddddddd"),)
    not_asked = rules.arrive(
        push("d" * 40), later_push=None, queued=[], running=running, stop_running=False, now=0.0
    )
    assert not_asked.stop_running == () and not_asked.not_before is None


def test_a_deploy_supersedes_every_queued_deploy_of_its_repository_whatever_the_branch() -> None:
    queued = [
        facts(1, push("a" * 40, branch="release", job=Job.DEPLOY), BuildState.QUEUED),
        facts(2, push("b" * 40, branch="main"), BuildState.QUEUED),  # a test: another lane
    ]
    arrival = rules.arrive(
        push("c" * 40, job=Job.DEPLOY),
        later_push=None,
        queued=queued,
        running=[],
        stop_running=True,
        now=0.0,
    )
    assert [s.build_id for s in arrival.supersede] == [1]


def test_claim_takes_the_oldest_settled_build_of_each_idle_repository() -> None:
    other = dataclasses.replace(push("x" * 40), repository="octo/lib")
    queued = [
        facts(5, push("a" * 40), BuildState.QUEUED),
        facts(3, push("b" * 40, branch="f"), BuildState.QUEUED, not_before=50.0),  # settling
        facts(4, other, BuildState.QUEUED),
        facts(6, dataclasses.replace(other, repository="octo/busy"), BuildState.QUEUED),
    ]
    decision = rules.claim(queued, ["OCTO/BUSY"], [], limit=5, now=10.0)
    # octo/app's oldest (3) still settles: its whole queue waits, in order; octo/busy runs one.
    assert decision.start == (4,)
    assert rules.claim(queued, [], [], limit=1, now=60.0).start == (3,)


def test_a_deploy_never_goes_backwards() -> None:
    deploy = facts(7, push("a" * 40, pushed_at=10.0, job=Job.DEPLOY), BuildState.QUEUED)
    newer_done = facts(5, push("b" * 40, pushed_at=20.0, job=Job.DEPLOY), BuildState.SUCCESS)
    older_done = facts(8, push("c" * 40, pushed_at=5.0, job=Job.DEPLOY), BuildState.SUCCESS)
    decision = rules.claim([deploy], [], [newer_done, older_done], limit=1, now=0.0)
    assert decision.start == ()
    assert [(s.build_id, s.reason) for s in decision.supersede] == [(7, "Superseded by bbbbbbb")]
    assert rules.claim([deploy], [], [older_done], limit=1, now=0.0).start == (7,)


def test_without_push_times_arrival_decides_what_is_later() -> None:
    early = facts(3, push("a" * 40), BuildState.SUCCESS)
    late = facts(9, push("b" * 40, pushed_at=1.0), BuildState.SUCCESS)
    assert rules.is_later(late, early) and not rules.is_later(early, late)


@pytest.mark.parametrize(
    ("state", "deploy_after_test", "from_fork", "deploys"),
    [
        (BuildState.SUCCESS, True, False, True),
        (BuildState.FAILURE, True, False, False),
        (BuildState.SUCCESS, False, False, False),
        (BuildState.SUCCESS, True, True, False),
    ],
)
def test_green_tests_headed_for_a_deploy_are_followed_by_one(
    state: BuildState, deploy_after_test: bool, from_fork: bool, deploys: bool
) -> None:
    test = facts(
        1,
        push("a" * 40, deploy_after_test=deploy_after_test, from_fork=from_fork, pushed_at=3.0),
        BuildState.RUNNING,
    )
    deploy = rules.deploy_after(test, state)
    assert (deploy is not None) is deploys
    if deploy is not None:
        assert (deploy.job, deploy.sha, deploy.pushed_at) == (Job.DEPLOY, "a" * 40, 3.0)


def test_an_interrupted_test_runs_once_more_unless_superseded() -> None:
    lost = facts(4, push("a" * 40), BuildState.RUNNING, attempt=1)
    assert rules.recover(lost, []) == rules.Recovery(True)
    assert rules.recover(dataclasses.replace(lost, attempt=2), []).reason == rules.INTERRUPTED
    newer = [
        facts(9, push("b" * 40), BuildState.QUEUED),
        facts(2, push("c" * 40), BuildState.QUEUED),
    ]
    assert rules.recover(lost, newer).reason == "Superseded by bbbbbbb"


def test_an_interrupted_deploy_ends_whatever_waits() -> None:
    lost = facts(4, push("a" * 40, job=Job.DEPLOY), BuildState.RUNNING, attempt=1)
    assert rules.recover(lost, []) == rules.Recovery(False, rules.INTERRUPTED)


def test_a_rerun_of_a_deploy_is_refused_once_a_later_push_is_deployed_or_on_its_way() -> None:
    deploy = facts(4, push("a" * 40, job=Job.DEPLOY, pushed_at=1.0), BuildState.SUCCESS)
    on_its_way = facts(6, push("b" * 40, deploy_after_test=True, pushed_at=2.0), BuildState.QUEUED)
    assert rules.rerun(deploy, [on_its_way]).refused is not None
    plan = rules.rerun(deploy, [dataclasses.replace(on_its_way, state=BuildState.FAILURE)])
    assert plan.request is not None
    assert (plan.request.job, plan.request.deploy_after_test) == (Job.TEST, True)
    test = facts(3, push("a" * 40, deploy_after_test=True, pushed_at=1.0), BuildState.SUCCESS)
    just_tests = rules.rerun(test, [on_its_way]).request
    assert just_tests is not None and not just_tests.deploy_after_test
    assert rules.rerun(dataclasses.replace(test, state=BuildState.RUNNING), []).refused


# -- the queue as a state machine --------------------------------------------------------------

REPOSITORIES = ("octo/app", "Octo/App", "octo/lib")  # GitHub names are case-insensitive
BRANCHES = ("main", "feature")
DEPLOY_BRANCH = "main"


@dataclass
class Row:
    facts: BuildFacts
    stop_reason: str | None = None
    ended: int = 0  # how many times the build reached a final state
    made: bool = False  # make ran to its end
    description: str = ""


@dataclass
class Queue:
    """Rows in memory and the decisions of the rules applied to them, as the store does."""

    rows: dict[int, Row] = field(default_factory=dict)
    ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    now: float = 0.0
    deploy_starts: list[tuple[str, BuildFacts]] = field(default_factory=list)

    def of(self, repository: str, state: BuildState) -> list[BuildFacts]:
        return [
            row.facts
            for row in self.rows.values()
            if row.facts.repository.lower() == repository.lower() and row.facts.state is state
        ]

    def insert(self, request: BuildRequest, *, not_before: float | None = None) -> int:
        build_id = next(self.ids)
        self.rows[build_id] = Row(BuildFacts(build_id, request, BuildState.QUEUED, 0, not_before))
        return build_id

    def end(self, build_id: int, state: BuildState, description: str) -> None:
        row = self.rows[build_id]
        assert not row.facts.state.is_final, f"build {build_id} ended twice"
        row.facts = dataclasses.replace(row.facts, state=state)
        row.ended += 1
        row.description = description

    def later_push(self, request: BuildRequest) -> str | None:
        if request.pushed_at is None:
            return None
        later = [
            row.facts
            for row in self.rows.values()
            if row.facts.request.pushed_at is not None
            and row.facts.request.pushed_at > request.pushed_at
            and rules.same_lane(request, row.facts.request)
            and row.facts.job is request.job
        ]
        return max(later, key=lambda f: f.request.pushed_at or 0).request.sha if later else None

    def arrive(self, request: BuildRequest) -> int:
        later = self.later_push(request)
        arrival = rules.arrive(
            request,
            later_push=later,
            queued=self.of(request.repository, BuildState.QUEUED),
            running=self.of(request.repository, BuildState.RUNNING),
            stop_running=True,
            now=self.now,
        )
        for build_id, reason in arrival.stop_running:
            self.rows[build_id].stop_reason = self.rows[build_id].stop_reason or reason
        build_id = self.insert(request, not_before=arrival.not_before)
        if arrival.born_superseded_by is not None:
            self.end(build_id, BuildState.ERROR, f"Superseded by {arrival.born_superseded_by}")
        for ended in arrival.supersede:
            self.end(ended.build_id, BuildState.ERROR, ended.reason)
        return build_id

    def claim(self, limit: int) -> tuple[int, ...]:
        queued = [row.facts for row in self.rows.values() if row.facts.state is BuildState.QUEUED]
        busy = {
            row.facts.repository
            for row in self.rows.values()
            if row.facts.state is BuildState.RUNNING
        }
        deployed = [
            row.facts
            for row in self.rows.values()
            if row.facts.job is Job.DEPLOY and row.facts.state is BuildState.SUCCESS
        ]
        decision = rules.claim(queued, busy, deployed, limit=limit, now=self.now)
        for ended in decision.supersede:
            self.end(ended.build_id, BuildState.ERROR, ended.reason)
        for build_id in decision.start:
            row = self.rows[build_id]
            row.facts = dataclasses.replace(
                row.facts, state=BuildState.RUNNING, attempt=row.facts.attempt + 1, heard=True
            )
            row.stop_reason = None
            if row.facts.job is Job.DEPLOY:
                self.deploy_starts.append((row.facts.repository.lower(), row.facts))
        return decision.start

    def finish(self, build_id: int, passed: bool) -> None:
        row = self.rows[build_id]
        if row.stop_reason is not None:
            self.end(build_id, BuildState.ERROR, row.stop_reason)
            return
        state = BuildState.SUCCESS if passed else BuildState.FAILURE
        row.made = True
        self.end(build_id, state, "made")
        deploy = rules.deploy_after(row.facts, state)
        if deploy is not None:
            deploy_id = self.insert(deploy)
            queued = self.of(deploy.repository, BuildState.QUEUED)
            for ended in rules.superseded_by_deploy(deploy_id, deploy, queued):
                self.end(ended.build_id, BuildState.ERROR, ended.reason)

    def crash(self, build_id: int) -> None:
        row = self.rows[build_id]
        recovery = rules.recover(row.facts, self.of(row.facts.repository, BuildState.QUEUED))
        if recovery.requeue:
            row.facts = dataclasses.replace(row.facts, state=BuildState.QUEUED)
            row.stop_reason = None
        else:
            self.end(build_id, BuildState.ERROR, recovery.reason or rules.INTERRUPTED)

    def cancel(self, build_id: int) -> None:
        row = self.rows[build_id]
        if row.facts.state is BuildState.QUEUED:
            self.end(build_id, BuildState.ERROR, "Cancelled")
        elif row.facts.state is BuildState.RUNNING:
            row.stop_reason = row.stop_reason or "Cancelled"

    def rerun(self, build_id: int) -> None:
        row = self.rows[build_id]
        plan = rules.rerun(row.facts, [r.facts for r in self.rows.values()])
        if plan.request is not None:
            self.insert(plan.request)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue()
        self.pushes = itertools.count(1)
        self.sent: list[BuildRequest] = []  # pushes GitHub delivered, for late deliveries

    def _sha(self, n: int) -> str:
        return f"{n:040x}"

    @rule(repository=st.sampled_from(REPOSITORIES), branch=st.sampled_from(BRANCHES))
    def a_push(self, repository: str, branch: str) -> None:
        n = next(self.pushes)
        request = dataclasses.replace(
            push(self._sha(n), branch=branch, pushed_at=float(n)),
            repository=repository,
            deploy_after_test=branch == DEPLOY_BRANCH,
        )
        self.sent.append(request)
        self.queue.arrive(request)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def a_late_delivery(self, data: st.DataObject) -> None:
        # A delivery GitHub failed and sent again later, after newer pushes (a new GUID: the
        # store's dedupe is not what protects the branch's head here, push order is).
        self.queue.arrive(data.draw(st.sampled_from(self.sent)))

    @rule(repository=st.sampled_from(REPOSITORIES), number=st.integers(1, 3))
    def a_pull_request(self, repository: str, number: int) -> None:
        n = next(self.pushes)
        request = BuildRequest(
            repository=repository,
            sha=self._sha(n),
            ref=f"refs/pull/{number}/head",
            branch=f"topic-{number}",
            pull_request=number,
            pushed_at=float(n),
        )
        self.queue.arrive(request)

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.3, 1.0]))
    def time_passes(self, seconds: float) -> None:
        self.queue.now += seconds

    @rule(limit=st.integers(1, 3))
    def claim(self, limit: int) -> None:
        self.queue.claim(limit)

    def _running(self) -> list[int]:
        return [i for i, r in self.queue.rows.items() if r.facts.state is BuildState.RUNNING]

    def _finished(self) -> list[int]:
        return [i for i, r in self.queue.rows.items() if r.facts.state.is_final]

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), passed=st.booleans())
    def finish(self, data: st.DataObject, passed: bool) -> None:
        self.queue.finish(data.draw(st.sampled_from(self._running())), passed)

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data())
    def the_daemon_dies(self, data: st.DataObject) -> None:
        self.queue.crash(data.draw(st.sampled_from(self._running())))

    @precondition(lambda self: bool(self.queue.rows))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.queue.cancel(data.draw(st.sampled_from(sorted(self.queue.rows))))

    @precondition(lambda self: bool(self._finished()))
    @rule(data=st.data())
    def rerun(self, data: st.DataObject) -> None:
        self.queue.rerun(data.draw(st.sampled_from(self._finished())))

    @invariant()
    def one_running_build_per_repository(self) -> None:
        running = [
            r.facts.repository.lower()
            for r in self.queue.rows.values()
            if r.facts.state is BuildState.RUNNING
        ]
        assert len(running) == len(set(running))

    @invariant()
    def every_build_ends_at_most_once(self) -> None:
        assert all(row.ended <= 1 for row in self.queue.rows.values())

    @invariant()
    def no_deploy_goes_backwards(self) -> None:
        for index, (repository, deploy) in enumerate(self.queue.deploy_starts):
            for earlier_repository, earlier in self.queue.deploy_starts[:index]:
                done = self.queue.rows[earlier.id].facts.state is BuildState.SUCCESS
                if earlier_repository == repository and done and earlier.id < deploy.id:
                    # A deploy that started after `earlier` succeeded never ships an older push.
                    assert not rules.is_later(earlier, deploy) or earlier.id > deploy.id

    def teardown(self) -> None:
        """Let everything run to its end; then every build ended once and every branch's newest
        push was built, unless a person cancelled it or daemons kept dying under it."""
        queue = self.queue
        queue.now += 10.0
        for _ in range(500):
            started = queue.claim(3)
            running = self._running()
            if not started and not running:
                break
            for build_id in running:
                queue.finish(build_id, passed=True)
        assert all(row.facts.state.is_final for row in queue.rows.values())
        assert all(row.ended == 1 for row in queue.rows.values())
        lanes: dict[tuple[str, str, Job], list[Row]] = defaultdict(list)
        for row in queue.rows.values():
            request = row.facts.request
            if request.pushed_at is not None:
                lanes[(request.repository.lower(), request.ref, request.job)].append(row)
        for rows in lanes.values():
            newest = max(row.facts.request.pushed_at or 0.0 for row in rows)
            # The newest push may have been delivered more than once: one of them was built.
            pushes = [row for row in rows if row.facts.request.pushed_at == newest]
            assert any(
                row.made or row.description in ("Cancelled", rules.INTERRUPTED) for row in pushes
            ), [(row.facts.id, row.description) for row in pushes]


QueueMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_the_queue_keeps_its_promises = QueueMachine.TestCase


def test_lanes_pick_their_builds_case_insensitively() -> None:
    lanes = defaultdict(list)
    for name in REPOSITORIES:
        lanes[name.lower()].append(name)
    assert rules.same_lane(
        dataclasses.replace(push("a" * 40), repository="Octo/App"), push("b" * 40)
    )
    assert len(lanes) == 2


def test_a_rerun_of_an_older_commit_does_not_supersede_a_lost_build_of_a_newer_push() -> None:
    # Found by the state machine: a re-run queues the older commit with a higher id; the build
    # of the branch's newest push, lost with its daemon, must run again, not end superseded.
    lost = facts(3, push("b" * 40, pushed_at=2.0), BuildState.RUNNING, attempt=1)
    rerun_of_older = facts(4, push("a" * 40, pushed_at=1.0), BuildState.QUEUED)
    assert rules.recover(lost, [rerun_of_older]) == rules.Recovery(True)
