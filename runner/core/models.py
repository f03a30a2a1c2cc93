"""Plain data that flows between intake, store, scheduler, executor and reporter."""

import enum
from dataclasses import dataclass


class Job(enum.StrEnum):
    TEST = "test"
    DEPLOY = "deploy"

    @property
    def context(self) -> str:
        """The commit status context GitHub shows for this job."""
        return f"hobotnica/{self.value}"


class BuildState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"

    @property
    def is_final(self) -> bool:
        return self in (BuildState.SUCCESS, BuildState.FAILURE, BuildState.ERROR)


WAITING_FOR_APPROVAL = "waiting"

# GitHub's merge queues test each group on a temporary branch under this prefix.
MERGE_QUEUE_PREFIX = "gh-readonly-queue/"


@dataclass(frozen=True)
class BuildRequest:
    """What a webhook asks for: one `make` target on one commit. Decided by pure code."""

    repository: str
    sha: str
    ref: str  # refs/heads/BRANCH or refs/pull/N/head
    branch: str
    job: Job = Job.TEST
    pull_request: int | None = None
    from_fork: bool = False
    deploy_after_test: bool = False
    message: str = ""
    author: str = ""
    # When GitHub says this commit was pushed (repository.pushed_at / pull_request.updated_at):
    # the order pushes happened in, which deliveries (redeliveries above all) may not keep.
    pushed_at: float | None = None
    # A fork's pull request under `pull_requests.forks = "approve"`: runs once a person approves.
    needs_approval: bool = False
    # The head a push moved the branch from (40 hex digits; "" for a new branch or no push):
    # the push's changes are GitHub's compare view `before...sha`.
    before: str = ""
    # Who started it by hand (a build through the API, a re-run); "" for a webhook's build.
    asked_by: str = ""
    # Started by the project's schedule (`runner.scheduling.schedules`), not by a webhook.
    scheduled: bool = False

    @property
    def is_merge_group(self) -> bool:
        return self.pull_request is None and self.ref.startswith(f"refs/heads/{MERGE_QUEUE_PREFIX}")

    @property
    def trigger(self) -> str:
        """What started it (`HOBOTNICA_TRIGGER`): manual (a person: the API, a re-run),
        schedule, pull_request, merge_group or push."""
        if self.asked_by:
            return "manual"
        if self.scheduled:
            return "schedule"
        if self.pull_request is not None:
            return "pull_request"
        return "merge_group" if self.is_merge_group else "push"


@dataclass(frozen=True)
class Build:
    """A build as stored: a request plus its id, state and times."""

    id: int
    request: BuildRequest
    state: BuildState
    description: str
    delivery_id: str | None
    received_at: float
    queued_at: float
    started_at: float | None
    finished_at: float | None
    attempt: int
    exit_code: int | None = None
    # While it runs: the daemon holding its lease (`runner.core.instance`, host/pid/token/node).
    lease_owner: str | None = None
    # The daemon that ran it last (its owner id, `runner.core.instance.node_of` names its node).
    ran_on: str | None = None
    # Only for a build that needs approval: WAITING_FOR_APPROVAL, or "approved by LOGIN".
    approval: str | None = None
    # Lineage: the test build a deploy follows; the build a re-run ran again.
    parent_id: int | None = None
    rerun_of: int | None = None

    @property
    def is_waiting_for_approval(self) -> bool:
        return self.approval == WAITING_FOR_APPROVAL and self.state is BuildState.QUEUED

    @property
    def repository(self) -> str:
        return self.request.repository

    @property
    def sha(self) -> str:
        return self.request.sha

    @property
    def job(self) -> Job:
        return self.request.job
