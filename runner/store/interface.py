"""The store as every stage sees it: one typed interface, grouped by concern, one adapter per
backend (SQLite today, `runner.store.sqlite`).

Every arrow of the data flow that crosses a restart goes through here. Each write is one
transaction, durable before it returns; decisions about the queue are the scheduling stage's
pure rules (`runner.scheduling.rules`), which an adapter calls inside its transaction with the
rows they need. A backend that cannot write now (a full disk) raises `StoreUnavailable` and
changed nothing. The contract every adapter keeps is `tests/test_store_contract.py`.

Outbox policy, the same on every backend:
- only the newest waiting state of a commit and context is worth sending (older ones end
  `collapsed`); newest builds first; a state being posted is `sending`, which counts as heard;
- a superseded build GitHub never heard of ends silently (`dropped`);
- at most `GITHUB_STATUS_LIMIT` statuses per commit and context (past `FINAL_ONLY_AFTER` only
  final ones);
- a `pending` state is due `PENDING_HOLD` seconds after it is written, so a build that ends or
  is superseded meanwhile costs GitHub one request or none.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from runner.core.models import Build, BuildState
from runner.core.statuses import Status
from runner.store.announcements import Announcer
from runner.store.records import (
    Delivery,
    DeliveryOutcome,
    Hook,
    NotificationItem,
    OutboxItem,
    RecoveredBuild,
    RegisteredRepository,
    Registration,
    RepositoryStatus,
    Rerun,
    ScheduleRecord,
    Variables,
)

GITHUB_STATUS_LIMIT = 1000
FINAL_ONLY_AFTER = 990
PENDING_HOLD = 0.3

IsGone = Callable[[str | None], bool]


def runs_anything(_repository: str) -> bool:
    return True


class Deliveries(Protocol):
    async def record_delivery(self, delivery: Delivery) -> DeliveryOutcome:
        """Persist a delivery and queue its builds (a known delivery id changes nothing)."""
        ...

    async def known_deliveries(self, delivery_ids: Iterable[str]) -> set[str]: ...

    async def hooks(self) -> list[Hook]: ...

    async def set_hook_checked(self, repository: str, until: float) -> None: ...


class BuildQueue(Protocol):
    async def claim_builds(
        self,
        limit: int,
        owner: str,
        lease_seconds: float,
        can_run: Callable[[str], bool] = runs_anything,
    ) -> list[Build]:
        """Lease up to `limit` queued builds to `owner`, of repositories it `can_run` (a node
        builds `hobotnica try`'s local repositories only where they are)."""
        ...

    async def settling_until(self) -> float | None: ...

    async def heartbeat(
        self, owner: str, build_ids: Iterable[int], lease_seconds: float
    ) -> dict[int, str | None]:
        """Renew `owner`'s leases; each build's stop request (a build missing: not its own)."""
        ...

    async def finish_build(
        self,
        build_id: int,
        status: Status,
        exit_code: int | None,
        owner: str,
        attempt: int | None = None,
    ) -> int | None:
        """Record a build's result; the deploy it unlocks, if any. Only its lease's owner may,
        and only for the attempt it runs (`attempt`, None: whichever), so a daemon that lost
        the build and got it back never finishes the new attempt with the old one's result."""
        ...

    async def set_commit_info(self, build_id: int, message: str, author: str) -> None: ...

    async def recover_interrupted(self, is_gone: IsGone) -> list[RecoveredBuild]: ...

    async def release(self, owner: str, build_ids: Iterable[int]) -> list[RecoveredBuild]: ...

    async def cancel_build(self, build_id: int, reason: str) -> BuildState | None: ...

    async def rerun_build(self, build_id: int, by: str = "") -> Rerun:
        """Queue a finished build's commit again (`by`: who asked, shown on its page)."""
        ...

    async def approve_build(self, build_id: int, by: str) -> bool | None:
        """Let a fork's build that waits for approval run: True if it did now, False if it was
        not waiting, None if there is no such build."""
        ...


class Leases(Protocol):
    async def acquire_lease(self, name: str, owner: str, seconds: float, is_gone: IsGone) -> bool:
        """Take or renew the lease `name`; False while another live owner holds it."""
        ...

    async def pause(self, name: str, until: float) -> None: ...

    async def paused_until(self, name: str) -> float: ...

    async def drop_lease(self, name: str, owner: str) -> None: ...


class Outbox(Protocol):
    async def next_status(self, now: float) -> tuple[OutboxItem | None, float | None]:
        """The next status to post (marked `sending`), or None and when to look again."""
        ...

    async def status_done(self, item_id: int, outcome: str) -> None: ...

    async def status_retry(self, item_id: int, next_attempt_at: float) -> None: ...

    async def pending_status_count(self) -> int: ...


class Registry(Protocol):
    """Repositories registered through the REST API, and build variables."""

    async def registration(self, repository: str) -> RegisteredRepository | None: ...

    async def registration_by_webhook(self, uid: str) -> RegisteredRepository | None: ...

    async def registrations(self) -> list[RegisteredRepository]: ...

    async def status_token(self, repository: str) -> str | None:
        """The token a registered repository's statuses are posted with (a retired one for a
        while after its removal)."""
        ...

    async def register(self, new: Registration) -> RegisteredRepository | None:
        """Insert in status `cloning`; None when registered already (and not disabled)."""
        ...

    async def set_registration_status(
        self,
        repository: str,
        status: RepositoryStatus,
        reason: str = "",
        *,
        only_from: RepositoryStatus | None = None,
    ) -> bool: ...

    async def disable_registration(
        self, repository: str, reason: str, webhook_uid: str
    ) -> list[int] | None: ...

    async def update_registration(
        self, repository: str, changes: Mapping[str, object]
    ) -> RegisteredRepository | None: ...

    async def set_registration_hook(self, repository: str, hook_id: str) -> None: ...

    async def access_checked(self, repository: str, when: float, webhook_uid: str) -> None: ...

    async def remove_registration(self, repository: str) -> list[int]: ...

    async def variables(self, scope: str) -> Variables: ...

    async def build_variables(self, registered: RegisteredRepository) -> Variables: ...

    async def registration_with_variables(
        self, repository: str
    ) -> tuple[RegisteredRepository, Variables] | None: ...

    async def replace_env(self, scope: str, env: Mapping[str, str]) -> None: ...

    async def put_secret(self, scope: str, name: str, value: str) -> bool: ...

    async def delete_secret(self, scope: str, name: str) -> bool: ...


class Listings(Protocol):
    """What the pages and the API read."""

    async def get_build(self, build_id: int) -> Build | None: ...

    async def get_builds(self, build_ids: Iterable[int]) -> dict[int, Build]: ...

    async def repositories_with_builds(self) -> list[str]: ...

    async def latest_per_lane(
        self, repositories: Iterable[str], limit: int
    ) -> dict[str, list[Build]]: ...

    async def active_builds(self, limit: int) -> list[Build]: ...

    async def list_builds(
        self,
        repository: str | None,
        *,
        branch: str | None = None,
        state: str | None = None,
        job: str | None = None,
        author: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Build]:
        """A page of builds, newest first: of `repository` (None: of all), filtered."""
        ...

    async def latest_test_build(self, repository: str, branch: str) -> Build | None: ...

    async def followers(self, build_id: int) -> tuple[list[int], list[int]]:
        """The builds that came of a build: (the deploys its success queued, its re-runs)."""
        ...

    async def latest_build_of_sha(self, repository: str, sha: str) -> Build | None: ...

    async def deploy_branch_seen(self, repository: str) -> str | None: ...

    async def state_counts(self) -> dict[str, int]: ...


class Upkeep(Protocol):
    async def prune(self, *, older_than: float, keep_per_repository: int) -> list[int]: ...

    async def probe_write(self) -> None:
        """One small write, to learn whether the store can write again."""
        ...

    @property
    def writable(self) -> bool:
        """False from a write that failed for want of space (or I/O) until one succeeds."""
        ...

    @property
    def write_failures(self) -> int: ...

    @property
    def is_shared(self) -> bool:
        """Whether nodes on other hosts share this store: logs and secrets go through it."""
        ...

    async def close(self) -> None: ...


class BuildLogs(Protocol):
    """Build logs for the nodes that did not run the build (`runner.executor.log_shipping`),
    and the installation's secrets that every node must share (the session key)."""

    async def append_log(self, build_id: int, attempt: int, start: int, data: bytes) -> None: ...

    async def read_log(self, build_id: int, start: int) -> tuple[int, bytes]:
        """(attempt, the log from `start`) as shipped; a newer attempt started over at 0."""
        ...

    async def installation_secret(self, name: str, size: int) -> bytes: ...


class Schedules(Protocol):
    """Scheduled builds (`runner.scheduling.schedules`): each slot builds once, whichever node."""

    async def schedule_seen(self, repository: str, expression: str) -> ScheduleRecord:
        """The repository's schedule record; a new or changed expression starts one now."""
        ...

    async def schedule_built(self, repository: str, slot: float) -> None:
        """The build of `slot` is queued (a later slot already built stays the last)."""
        ...


class Notifications(Protocol):
    """What builds' ends tell the team, queued as they end (`rules.notification_for`)."""

    async def next_notification(self, now: float) -> tuple[NotificationItem | None, float | None]:
        """The oldest notification due now, or None and when the next one is due."""
        ...

    async def notification_sent(self, notification_id: int, channel: str) -> None: ...

    async def notification_settled(self, notification_id: int, retry_at: float | None) -> None:
        """Done (None), or try the channels that do not have it yet again at `retry_at`."""
        ...


class Announcing(Protocol):
    @property
    def announcements(self) -> Announcer:
        """What each write committed, for the stages that wait on it."""
        ...


class Store(
    Deliveries,
    BuildQueue,
    Leases,
    Outbox,
    Registry,
    Listings,
    BuildLogs,
    Upkeep,
    Schedules,
    Notifications,
    Announcing,
    Protocol,
):
    """Everything the daemon keeps."""
