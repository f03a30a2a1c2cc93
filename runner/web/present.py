"""A build as pages show it: masked text, readable times and durations. Pure.

`BuildView.of(build, masker)` is the only way a build reaches a template, so nothing a webhook
wrote (commit message, branch, author) or a build described can skip the masker.
"""

import datetime
import re
from dataclasses import asdict, dataclass
from typing import Any

from runner.core.instance import node_of
from runner.core.masking import SecretMasker
from runner.core.models import Build
from runner.core.names import short_sha
from runner.core.statuses import format_duration

# Control characters in commit messages and names (terminal escapes, BEL) are not shown.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class BuildView:
    id: int
    path: str  # /builds/{id}; pages link relatively, so they work under any host name
    repository: str
    job: str
    context: str
    sha: str
    short_sha: str
    ref: str
    branch: str
    lane: str  # what the build is of, in words: "main", "pull request #7", "tag v1.0"
    pull_request: int | None
    from_fork: bool
    title: str  # the commit message's first line
    message: str
    author: str
    state: str
    description: str
    exit_code: int | None
    attempt: int
    node: str | None  # the node that ran it (several nodes), None before any did
    is_final: bool
    received_at: str | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    waited: str  # queued → started (or → now, if still queued: empty)
    ran: str  # started → finished
    approval: str | None = None  # a fork's build: "waiting", or "approved by LOGIN"
    started_epoch: float | None = None  # the page counts a running build's time up from it
    waiting_for_approval: bool = False
    before: str = ""  # the branch's head before the push (its changes: before...sha)
    asked_by: str = ""  # who started it by hand (the API, a re-run)
    trigger: str = "push"  # what started it (`BuildRequest.trigger`)

    @classmethod
    def of(cls, build: Build, masker: SecretMasker) -> "BuildView":
        def mask(text: str) -> str:
            # Masked again once the control characters are gone: a BEL inside a secret hides
            # it from the first pass, not from the second.
            return masker.mask_text(_CONTROL.sub("", masker.mask_text(text)))

        request = build.request
        branch = mask(request.branch)
        if request.pull_request is not None:
            lane = f"pull request #{request.pull_request}"
        elif request.ref.startswith("refs/tags/"):
            lane = f"tag {branch}"
        else:
            lane = branch
        message = mask(request.message)
        return cls(
            id=build.id,
            path=f"/builds/{build.id}",
            repository=build.repository,
            job=build.job.value,
            context=build.job.context,
            sha=request.sha,
            short_sha=short_sha(request.sha),
            ref=mask(request.ref),
            branch=branch,
            lane=lane,
            pull_request=request.pull_request,
            from_fork=request.from_fork,
            title=message.strip().split("\n", 1)[0],
            message=message,
            author=mask(request.author),
            state=build.state.value,
            description=mask(build.description),
            exit_code=build.exit_code,
            attempt=build.attempt,
            node=node_of(build.ran_on),
            is_final=build.state.is_final,
            received_at=clock_time(build.received_at),
            queued_at=clock_time(build.queued_at),
            started_at=clock_time(build.started_at),
            finished_at=clock_time(build.finished_at),
            waited=_between(build.queued_at, build.started_at),
            ran=_between(build.started_at, build.finished_at),
            approval=build.approval,
            waiting_for_approval=build.is_waiting_for_approval,
            started_epoch=build.started_at,
            before=request.before,
            asked_by=mask(request.asked_by),
            trigger=request.trigger,
        )

    def live_state(self) -> dict[str, Any]:
        """What the build page updates while it watches the build run."""
        fields = (
            "state",
            "description",
            "is_final",
            "started_at",
            "finished_at",
            "waited",
            "ran",
            "started_epoch",
        )
        data = asdict(self)
        return {name: data[name] for name in fields}


def clock_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _between(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    return format_duration(max(0.0, end - start))
