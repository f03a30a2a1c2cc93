"""The life of an API-registered repository after the request that registered it.

- The clone runs as a background task this object owns: `cloning` → `ready` or `clone_failed`.
  A lease per repository keeps two daemons (blue/green) from cloning it at once, and a clone
  interrupted by a restart is started again (`resume_clones`).
- Access is re-checked periodically, and at once when GitHub answers 401 for the stored token.
  When it is gone the repository is disabled: its builds stop, its token is forgotten, and its
  mirror and workspace are deleted from disk. Registering it again (someone with access) brings
  it back.
- Removal (DELETE) stops its builds and deletes its files, variables and GitHub hook.
"""

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from runner.api.github_access import GitHubAccess, GitHubUnavailable, TokenRejected
from runner.build.git import Repositories
from runner.build.masking import SecretMasker
from runner.errors import CheckoutError
from runner.projects import ProjectDirectory
from runner.settings import Project
from runner.store import Store, registry
from runner.store.registry import RegisteredRepository

log = structlog.get_logger(logger_name="hobotnica.registrations")

CLONE_TIMEOUT = 1800.0
CLONE_LEASE_SECONDS = CLONE_TIMEOUT + 60
ACCESS_REVOKED = "access revoked: the registering token can no longer read the repository"


@dataclass
class Registrations:
    store: Store
    repositories: Repositories
    projects: ProjectDirectory
    access: GitHubAccess
    owner: str
    is_gone: Callable[[str | None], bool]
    stop_build: Callable[[int, str], object]
    access_check_interval: float
    # Told the token of a removed repository, so statuses already owed still reach GitHub.
    on_removed: Callable[[str, str], None] = lambda _repository, _token: None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _checking: set[str] = field(default_factory=set)

    def clone_in_background(self, repository: str) -> None:
        self._spawn(self._clone(repository), f"clone {repository}")

    async def resume_clones(self) -> None:
        """Start again the clones a stopped daemon left in `cloning`."""
        for registered in await self.store.transact(registry.all_registered):
            if registered.status == "cloning":
                self.clone_in_background(registered.repository)

    async def _clone(self, repository: str) -> None:
        lease = f"clone:{repository.lower()}"
        if not await self.store.acquire_lease(lease, self.owner, CLONE_LEASE_SECONDS, self.is_gone):
            return  # another daemon is cloning it
        try:
            registered = await self.store.transact(registry.get, repository)
            if registered is None or registered.status != "cloning":
                return
            clone_url = self.projects.clone_url(Project(repository=registered.repository))
            started = time.monotonic()
            try:
                async with asyncio.timeout(CLONE_TIMEOUT):
                    await self.repositories.clone(
                        registered.repository, clone_url, registered.token
                    )
            except (CheckoutError, TimeoutError) as error:
                masker = SecretMasker([registered.token] if registered.token else [])
                reason = masker.mask_text(str(error) or f"timed out after {CLONE_TIMEOUT:g} s")
                log.warning("clone failed", repository=registered.repository, reason=reason)
                await self.store.transact(
                    registry.set_status,
                    registered.repository,
                    "clone_failed",
                    reason,
                    only_from="cloning",
                )
                return
            await self.store.transact(
                registry.set_status, registered.repository, "ready", only_from="cloning"
            )
            log.info(
                "cloned",
                repository=registered.repository,
                duration_s=round(time.monotonic() - started, 3),
            )
        finally:
            with contextlib.suppress(Exception):
                await self.store.drop_lease(lease, self.owner)

    async def check_access_once(self) -> None:
        """Re-check the registrations not checked for `access_check_interval` (periodic job)."""
        due = time.time() - self.access_check_interval
        for registered in await self.store.transact(registry.all_registered):
            if registered.status != "disabled" and registered.access_checked_at <= due:
                await self.check_access(registered)

    def token_rejected(self, repository: str) -> None:
        """GitHub answered 401 for the repository's stored token: check its access now."""
        if repository.lower() in self._checking:
            return

        async def check() -> None:
            registered = await self.store.transact(registry.get, repository)
            if registered is not None and registered.status != "disabled":
                await self.check_access(registered)

        self._spawn(check(), f"access check {repository}")

    async def check_access(self, registered: RegisteredRepository) -> None:
        name = registered.repository
        self._checking.add(name.lower())
        try:
            if registered.token is None:
                await self.disable(name, ACCESS_REVOKED)
                return
            self.access.forget(registered.token)  # ask GitHub, not the cache
            try:
                found = await self.access.repository(registered.token, name)
            except TokenRejected:
                found = None
            except GitHubUnavailable:
                log.warning("access check postponed: GitHub unavailable", repository=name)
                return
            if found is None:
                await self.disable(name, ACCESS_REVOKED)
            else:
                await self.store.transact(registry.access_checked, name, time.time())
        finally:
            self._checking.discard(name.lower())

    async def disable(self, repository: str, reason: str) -> None:
        stopping = await self.store.transact(registry.disable, repository, reason)
        for build_id in stopping:
            self.stop_build(build_id, "Stopped: the repository was disabled")
        await self.repositories.remove(repository)
        log.warning(
            "repository disabled; its mirror and workspace were deleted",
            repository=repository,
            reason=reason,
        )

    async def remove(self, registered: RegisteredRepository) -> None:
        if registered.token:
            self.on_removed(registered.repository, registered.token)
        stopping = await self.store.transact(registry.remove, registered.repository)
        for build_id in stopping:
            self.stop_build(build_id, "Stopped: the repository was removed")
        await self.repositories.remove(registered.repository)
        if registered.hook_id and registered.token:
            await self.access.delete_hook(
                registered.token, registered.repository, registered.hook_id
            )
        log.info("repository removed", repository=registered.repository)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        # A fresh context: the request that started it (its client, its delivery) is over.
        task = asyncio.create_task(
            self._logged(work, name), name=name, context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except Exception:
            log.exception("background work failed", work=name)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
