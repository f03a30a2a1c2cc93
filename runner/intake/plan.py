"""What a webhook asks for, decided by pure functions over the payload (no I/O, no clock).

A `Plan` either carries the build requests to persist or says why nothing is built. A payload
that is signed but malformed raises `PayloadError`, which intake answers with 400.
"""

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.core.errors import HobotnicaError
from runner.core.models import Build, BuildRequest
from runner.core.names import is_branch_name, is_repository_name
from runner.core.settings import Project

ProjectLookup = Callable[[str], Project | None]


class PayloadError(HobotnicaError):
    """A signed payload that does not have the shape GitHub gives this event."""


@dataclass(frozen=True)
class LaneStop:
    """Stop the queued and running builds of one lane (`ref`: `refs/heads/BRANCH`, or a pull
    request's `refs/pull/N/head`) of a repository, saying `reason`: of one commit (`sha`), or
    any; with `waiting_only`, only builds that wait for approval."""

    repository: str
    ref: str
    sha: str | None
    reason: str
    waiting_only: bool = False

    def matches(self, build: Build) -> bool:
        request = build.request
        return (
            request.repository.lower() == self.repository.lower()
            and request.ref == self.ref
            and (self.sha is None or request.sha == self.sha)
            and (not self.waiting_only or build.is_waiting_for_approval)
        )


@dataclass(frozen=True)
class Plan:
    requests: tuple[BuildRequest, ...] = ()
    ignored: str | None = None
    stops: tuple[LaneStop, ...] = ()
    # Builds to run again (GitHub's Re-run buttons): (repository, build id), and the latest
    # build of (repository, commit).
    reruns: tuple[tuple[str, int], ...] = ()
    rerun_commits: tuple[tuple[str, str], ...] = ()
    asked_by: str = ""  # who asked for the re-runs (a validated GitHub login)

    @property
    def acts(self) -> bool:
        return bool(self.requests or self.stops or self.reruns or self.rerun_commits)

    @classmethod
    def ignore(cls, reason: str) -> "Plan":
        return cls(ignored=reason)


def repository_name(payload: Mapping[str, Any]) -> str:
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(name, str) or not is_repository_name(name):
        raise PayloadError("repository.full_name is missing or not a valid repository name")
    return name


def default_branch(payload: Mapping[str, Any]) -> str | None:
    repository = payload.get("repository")
    branch = repository.get("default_branch") if isinstance(repository, dict) else None
    return branch if is_branch_name(branch) else None


def text(mapping: object, key: str) -> str:
    """An optional free-text field; anything that is not a string counts as empty."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, str):
        return ""
    # JSON may carry lone surrogates, which are not text; keep the rest of the string.
    return value.encode("utf-8", "replace").decode("utf-8")


def table(mapping: object, key: str) -> dict[str, Any]:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def timestamp(value: object) -> float | None:
    """GitHub's times: an epoch number (repository.pushed_at) or ISO 8601 (updated_at)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if 0 < value < 1e11 else None
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
