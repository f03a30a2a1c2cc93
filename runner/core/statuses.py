"""Commit statuses as data: the states, their descriptions and the payload GitHub receives.

https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
"""

import enum
from dataclasses import dataclass
from typing import Any

from runner.core.models import BuildRequest, BuildState, Job
from runner.core.names import short_sha

# GitHub rejects longer descriptions with a 422; we stay under it with room for an ellipsis.
MAX_DESCRIPTION = 139


class StatusState(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"

    @classmethod
    def of_build(cls, state: BuildState) -> "StatusState":
        if state in (BuildState.QUEUED, BuildState.RUNNING):
            return cls.PENDING
        return cls(state.value)


@dataclass(frozen=True)
class Status:
    """One state to post for a build's commit and context."""

    state: StatusState
    description: str

    def payload(self, *, context: str, target_url: str) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "description": truncate(self.description),
            "context": context,
            "target_url": target_url,
        }


def truncate(description: str) -> str:
    flat = " ".join(description.split())
    if len(flat) <= MAX_DESCRIPTION:
        return flat
    return flat[: MAX_DESCRIPTION - 1] + "…"


def queued(job: Job) -> Status:
    return Status(StatusState.PENDING, "Queued")


def first(request: BuildRequest) -> Status:
    """What GitHub is told of a build as it is queued."""
    return waiting_for_approval() if request.needs_approval else queued(request.job)


def waiting_for_approval() -> Status:
    return Status(StatusState.PENDING, "Waiting for approval")


def approved(by: str) -> Status:
    return Status(StatusState.PENDING, f"Approved by {by}; queued")


def running(job: Job) -> Status:
    return Status(StatusState.PENDING, f"Running make {job.value}")


def succeeded(job: Job, duration: float) -> Status:
    return Status(StatusState.SUCCESS, f"make {job.value} passed in {format_duration(duration)}")


def failed(job: Job, exit_code: int, duration: float) -> Status:
    return Status(
        StatusState.FAILURE,
        f"make {job.value} failed (exit {exit_code}) after {format_duration(duration)}",
    )


def errored(reason: str) -> Status:
    return Status(StatusState.ERROR, reason)


def superseded_by(sha: str) -> str:
    return f"Superseded by {short_sha(sha)}"


def timed_out(seconds: float) -> str:
    return f"Timed out after {seconds:g} s"


def out_of_memory(limit_bytes: int) -> str:
    return f"Out of memory (limit {format_bytes(limit_bytes)})"


def format_bytes(count: int) -> str:
    """2 GiB, 512 MiB, 1.5 GiB: a limit as people write it."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
