"""What the store keeps and hands back, whatever the backend: plain, frozen records.

Tokens and secrets leave the store only inside `RegisteredRepository.token`,
`RegisteredRepository.webhook_secret` and `Variables.secrets`, whose reprs hide them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.core.models import BuildRequest
from runner.core.statuses import Status

RepositoryStatus = Literal["cloning", "ready", "clone_failed", "disabled"]


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery as intake stores it."""

    id: str
    event: str
    hook_id: str | None
    received_at: float
    outcome: str
    requests: Sequence[BuildRequest] = ()
    hook_repository: str | None = None
    stop_running: bool = False


@dataclass(frozen=True)
class DeliveryOutcome:
    duplicate: bool
    build_ids: tuple[int, ...] = ()
    superseded_ids: tuple[int, ...] = ()
    # Test builds still running in a lane a newer push arrived in: (build id, newer sha).
    running_superseded: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class RecoveredBuild:
    id: int
    requeued: bool
    # The attempt that was lost (its processes carry this number); not part of its identity.
    attempt: int = field(default=0, compare=False)


@dataclass(frozen=True)
class NotificationItem:
    """A notification to send: what a build's end said ("failed", "fixed", "deploy failed"),
    how often sending was tried, and the channels that have it already."""

    id: int
    build_id: int
    kind: str
    attempts: int
    sent_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleRecord:
    """A repository's schedule as the store knows it: since when it has had this expression, and
    the slot it built last (None: none yet)."""

    since: float
    built_slot: float | None


@dataclass(frozen=True)
class Rerun:
    """A re-run asked for by a person: the new build's id, or why there is none."""

    build_id: int | None
    refused: str | None = None


@dataclass(frozen=True)
class Hook:
    repository: str
    hook_id: str
    checked_until: float


@dataclass(frozen=True)
class OutboxItem:
    id: int
    build_id: int
    repository: str
    sha: str
    context: str
    status: Status
    attempts: int


@dataclass(frozen=True)
class RegisteredRepository:
    repository: str
    webhook_uid: str
    status: RepositoryStatus
    status_reason: str
    default_branch: str
    deploy_branch: str | None
    deploy_enabled: bool
    timeout: int | None
    registered_by: str
    created_at: float
    access_checked_at: float
    hook_id: str | None
    token: str | None = field(default=None, repr=False)
    webhook_secret: str = field(default="", repr=False)
    # Registered by a GitHub App installation (`github.auto_register`): acts with its token.
    installation_id: int | None = None
    # Scheduled builds, as a configured project's (`runner.scheduling.schedules`).
    schedule: str | None = None
    schedule_timezone: str = "UTC"
    schedule_branch: str | None = None
    # Its own notification settings (`NotificationSettings` keys), secrets among them.
    notify: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def owner(self) -> str:
        return self.repository.split("/")[0]


@dataclass(frozen=True)
class Variables:
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Registration:
    """A new registration (or a registration renewed after access was lost)."""

    repository: str
    webhook_uid: str
    webhook_secret: str = field(repr=False)
    default_branch: str
    deploy_branch: str | None
    deploy_enabled: bool
    timeout: int | None
    registered_by: str
    token: str | None = field(repr=False)  # None: registered by a GitHub App installation
    installation_id: int | None = None
