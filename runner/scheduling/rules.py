"""The queue's rules, as pure functions over plain data: what builds, when, and what ends how.

The store reads the rows a decision needs (narrowed by its indexes), calls one of these inside
its transaction, under its lock on the repository, and writes what it returns. Nothing here
touches a database, a clock or a process: the time is an argument, and every rule is tested
without a store (`tests/test_queue_rules.py`, with a stateful hypothesis model of the queue).

- **Lanes.** Test builds of one repository, ref and job form a lane: a newer push to a branch
  makes the lane's queued builds pointless (and, with `builds.cancel_running`, its running test
  build). Deploys of one repository form one lane whatever their branch: deploying an older
  commit after a newer one would go backwards.
- **Newer** is push order when GitHub said when both were pushed (`pushed_at`), else arrival
  order (the build id): a redelivery of an old push must not replace the branch's head.
- **Claiming**: one running build per repository, its oldest queued build first, not before a
  burst of pushes has settled; a deploy never runs once a later push of the repository is
  deployed.
- **After green tests** a deploy follows, if the test was headed for one and not from a fork.
- **An interrupted build** (its daemon died) runs once more with the same id if it is a test,
  unless a newer push already waits in its lane; a deploy, which may have half happened, ends.
- **GitHub's view**: a build GitHub never heard of (no status sent or being sent) ends without a
  word; one it heard of ends with a final status, so no commit is left `pending`.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from runner.core.models import BuildRequest, BuildState, Job
from runner.core.statuses import superseded_by

# A push that supersedes another is built once its branch has had no newer push for this long.
SETTLE_SECONDS = 0.25
# A test build whose daemon died runs again until this attempt; then it ends.
MAX_ATTEMPTS = 2
INTERRUPTED = "Interrupted: daemon restarted"


@dataclass(frozen=True)
class BuildFacts:
    """What the rules need to know of one stored build."""

    id: int
    request: BuildRequest
    state: BuildState
    attempt: int = 0
    not_before: float | None = None  # settling: not claimable before then
    heard: bool = False  # GitHub has a status of it (sent, or being sent)

    @property
    def repository(self) -> str:
        return self.request.repository

    @property
    def job(self) -> Job:
        return self.request.job


# -- order and lanes ---------------------------------------------------------------------------


def is_later(build: BuildFacts, than: BuildFacts) -> bool:
    """Whether `build`'s push came after `than`'s: push order when both are known, else arrival."""
    mine, theirs = build.request.pushed_at, than.request.pushed_at
    if mine is not None and theirs is not None:
        return mine > theirs
    return build.id > than.id


def same_lane(newer: BuildRequest, other: BuildRequest) -> bool:
    """Whether `newer` makes `other` pointless when both wait: see the module's doc on lanes."""
    if newer.repository.lower() != other.repository.lower() or newer.job is not other.job:
        return False
    return newer.job is Job.DEPLOY or newer.ref == other.ref


# -- a new build arrives -----------------------------------------------------------------------


@dataclass(frozen=True)
class Supersede:
    """End a queued build as superseded; tell GitHub only if it heard of the build."""

    build_id: int
    reason: str
    tell_github: bool


@dataclass(frozen=True)
class Arrival:
    """What queueing `request` does to its lane."""

    # Set when a later push of the lane is already known: the new build is born superseded,
    # unheard of by GitHub, and changes nothing else (a late redelivery).
    born_superseded_by: str | None = None
    supersede: tuple[Supersede, ...] = ()
    stop_running: tuple[tuple[int, str], ...] = ()  # (running build id, stop reason)
    not_before: float | None = None


def arrive(
    request: BuildRequest,
    *,
    later_push: str | None,
    queued: Iterable[BuildFacts],
    running: Iterable[BuildFacts],
    stop_running: bool,
    now: float,
) -> Arrival:
    """Queue `request`, given its lane as stored.

    `later_push`: the sha of a build of the lane pushed after `request` (None if none, or if
    GitHub did not say when `request` was pushed). `queued` and `running`: builds of the
    repository in those states (more is fine: the lane is picked here).
    """
    if later_push is not None:
        return Arrival(born_superseded_by=later_push)
    reason = superseded_by(request.sha)
    older = tuple(
        Supersede(build.id, reason, build.heard)
        for build in queued
        if build.state is BuildState.QUEUED and same_lane(request, build.request)
    )
    stopped: tuple[tuple[int, str], ...] = ()
    if stop_running and request.job is Job.TEST:
        stopped = tuple(
            (build.id, reason)
            for build in running
            if build.state is BuildState.RUNNING
            and build.job is Job.TEST
            and same_lane(request, build.request)
        )
    # Part of a burst: wait for the branch to settle, so one build runs, not many.
    settle = now + SETTLE_SECONDS if older or stopped else None
    return Arrival(supersede=older, stop_running=stopped, not_before=settle)


# -- claiming ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    start: tuple[int, ...]  # build ids, in the order to start them
    supersede: tuple[Supersede, ...] = ()  # deploys that would go backwards


def claim(
    queued: Sequence[BuildFacts],
    running_repositories: Iterable[str],
    deployed: Sequence[BuildFacts],
    *,
    limit: int,
    now: float,
) -> Claim:
    """Up to `limit` builds to start: the oldest queued build of each idle repository.

    A repository's oldest build still settling holds its whole queue (its order is kept). A
    deploy whose repository already deployed a later push is superseded instead of started;
    `deployed` are successful deploys (more is fine: the repository is picked here).
    """
    busy = {name.lower() for name in running_repositories}
    heads: dict[str, BuildFacts] = {}
    for build in sorted(queued, key=lambda b: b.id):
        if build.state is BuildState.QUEUED:
            heads.setdefault(build.repository.lower(), build)
    start: list[int] = []
    ended: list[Supersede] = []
    for repository, build in sorted(heads.items(), key=lambda item: item[1].id):
        if len(start) >= limit:
            break
        if repository in busy or (build.not_before is not None and build.not_before > now):
            continue
        if build.job is Job.DEPLOY:
            newer = newest_later_deploy(build, deployed)
            if newer is not None:
                ended.append(Supersede(build.id, superseded_by(newer.request.sha), build.heard))
                continue
        start.append(build.id)
    return Claim(tuple(start), tuple(ended))


def newest_later_deploy(build: BuildFacts, deployed: Iterable[BuildFacts]) -> BuildFacts | None:
    """The newest successful deploy of `build`'s repository pushed after it: deploying `build`
    now would go backwards."""
    later = [
        other
        for other in deployed
        if other.job is Job.DEPLOY
        and other.state is BuildState.SUCCESS
        and other.repository.lower() == build.repository.lower()
        and is_later(other, build)
    ]
    return max(later, key=lambda other: other.id, default=None)


def settling_until(queued: Iterable[BuildFacts], now: float) -> float | None:
    """When the earliest settling build becomes claimable (None: none is settling)."""
    times = [b.not_before for b in queued if b.not_before is not None and b.not_before > now]
    return min(times, default=None)


# -- a build ends ------------------------------------------------------------------------------


def deploy_after(test: BuildFacts, state: BuildState) -> BuildRequest | None:
    """The deploy that follows a test build that ended `state`, if one does."""
    request = test.request
    if state is not BuildState.SUCCESS or request.job is not Job.TEST:
        return None
    if not request.deploy_after_test or request.from_fork:
        return None
    return BuildRequest(
        repository=request.repository,
        sha=request.sha,
        ref=request.ref,
        branch=request.branch,
        job=Job.DEPLOY,
        message=request.message,
        author=request.author,
        pushed_at=request.pushed_at,
        before=request.before,  # the same push's changes
        asked_by=request.asked_by,  # whoever asked for the tests asked for this deploy
    )


def superseded_by_deploy(
    deploy_id: int, deploy: BuildRequest, queued: Iterable[BuildFacts]
) -> tuple[Supersede, ...]:
    """Queued deploys a new deploy (`deploy_id`) makes pointless: the older ones of its lane."""
    reason = superseded_by(deploy.sha)
    return tuple(
        Supersede(build.id, reason, build.heard)
        for build in queued
        if build.state is BuildState.QUEUED
        and build.id < deploy_id
        and same_lane(deploy, build.request)
    )


@dataclass(frozen=True)
class Recovery:
    """What an interrupted build becomes: queued again (same id), or ended with `reason`."""

    requeue: bool
    reason: str | None = None


def recover(build: BuildFacts, newer_queued: Sequence[BuildFacts]) -> Recovery:
    """The rule for a build whose daemon went away mid-run (see the module's doc).

    `newer_queued`: queued builds of the repository (the lane and "newer" are picked here).
    Newer is push order: a re-run of an older commit waiting in the lane does not supersede the
    branch's newest push.
    """
    if build.job is Job.TEST:
        newer = [
            other
            for other in newer_queued
            if other.state is BuildState.QUEUED
            and is_later(other, build)
            and same_lane(other.request, build.request)
        ]
        if newer:
            return Recovery(False, superseded_by(max(newer, key=lambda b: b.id).request.sha))
        if build.attempt < MAX_ATTEMPTS:
            return Recovery(True)
    return Recovery(False, INTERRUPTED)


@dataclass(frozen=True)
class RerunPlan:
    request: BuildRequest | None  # what to queue (never superseding anything)
    refused: str | None = None


def rerun(build: BuildFacts, repository_builds: Iterable[BuildFacts]) -> RerunPlan:
    """A person asks to run a finished build's commit again.

    A test runs again as it did, deploying after it if it was headed for a deploy; a deploy runs
    its tests again with the deploy after them, so every deploy follows green tests of its own
    commit. Deploys never go backwards: re-running a deploy is refused while a later push of the
    repository is deployed or on its way (its deploy queued, running or done, or its tests
    queued or running with a deploy after them); a test re-run then just tests.
    """
    if not build.state.is_final:
        return RerunPlan(None, "the build has not finished")
    request = build.request
    deploy_after_test = (request.job is Job.DEPLOY or request.deploy_after_test) and (
        not request.from_fork
    )
    if deploy_after_test and any(_heads_for_deploy(o, build) for o in repository_builds):
        if request.job is Job.DEPLOY:
            return RerunPlan(None, "a later push of this repository is deployed or on its way")
        deploy_after_test = False
    return RerunPlan(replace(request, job=Job.TEST, deploy_after_test=deploy_after_test))


def _heads_for_deploy(other: BuildFacts, build: BuildFacts) -> bool:
    """Whether `other` is a later push of `build`'s repository deployed or on its way there."""
    if other.repository.lower() != build.repository.lower():
        return False
    if other.request.sha == build.request.sha or not is_later(other, build):
        return False
    if other.job is Job.DEPLOY:
        return other.state in (BuildState.QUEUED, BuildState.RUNNING, BuildState.SUCCESS)
    return other.request.deploy_after_test and other.state in (
        BuildState.QUEUED,
        BuildState.RUNNING,
    )


# Builds that did not end by their own make: a person or a newer push stopped them, a node lost
# them, the repository was removed or its deploys turned off. Their end says nothing about the
# branch. (`runner.store.sql.notifications` skips the same when it looks for the last end.)
STOPPED_PREFIXES = (
    "Cancelled",
    "Superseded by",
    "Stopped",
    "Repository is no longer registered",
    "Not deployed",
)


def notification_for(
    request: BuildRequest, state: BuildState, description: str, previous: BuildState | None
) -> str | None:
    """What a build that ran to its end tells the team (`[notifications]`): "failed" (the
    branch's test or deploy was green, now red), "fixed" (red, now green), "deploy failed"
    (every failed deploy), or nothing. `previous`: the lane's last final state before it, of a
    build that was not stopped. Only branches (pushes, schedules): a pull request or a merge
    queue's group has its checks on GitHub."""
    if request.pull_request is not None or request.is_merge_group:
        return None
    if not request.ref.startswith("refs/heads/") or description.startswith(STOPPED_PREFIXES):
        return None
    red = state in (BuildState.FAILURE, BuildState.ERROR)
    if red and request.job is Job.DEPLOY:
        return "deploy failed"
    if red and previous is BuildState.SUCCESS:
        return "failed"
    if state is BuildState.SUCCESS and previous in (BuildState.FAILURE, BuildState.ERROR):
        return "fixed"
    return None
