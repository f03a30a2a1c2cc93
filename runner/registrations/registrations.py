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

from runner.core.errors import CheckoutError, refuses_credentials
from runner.core.git import Repositories
from runner.core.masking import SecretMasker
from runner.core.settings import Project
from runner.registrations.github_access import GitHubAccess, GitHubUnavailable, TokenRejected
from runner.store import RegisteredRepository, Store
from runner.store.projects import ProjectDirectory

log = structlog.get_logger(logger_name="hobotnica.registrations")

CLONE_TIMEOUT = 1800.0
# An App installed on "All repositories" registers hundreds at once: they clone a few at a time.
CLONES_AT_ONCE = 4
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
    access_check_interval: float
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _checking: set[str] = field(default_factory=set)
    _cloning: set[str] = field(default_factory=set)
    _clone_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CLONES_AT_ONCE)
    )

    def clone_in_background(self, repository: str) -> None:
        if repository.lower() in self._cloning:
            return  # this daemon is at it already
        self._cloning.add(repository.lower())
        self._spawn(self._clone(repository), f"clone {repository}")

    async def resume_clones(self) -> None:
        """Start again the clones left in `cloning` by a daemon that stopped (at start, and
        periodically: after a blue/green switch the old daemon may give one up later)."""
        for registered in await self.store.registrations():
            if registered.status == "cloning":
                self.clone_in_background(registered.repository)

    async def look_after_registrations(self) -> None:
        """The periodic job: interrupted clones, then the access checks that are due."""
        await self.resume_clones()
        await self.check_access_once()

    async def _clone(self, repository: str) -> None:
        lease = f"clone:{repository.lower()}"
        await self._clone_slots.acquire()
        try:
            if not await self.store.acquire_lease(
                lease, self.owner, CLONE_LEASE_SECONDS, self.is_gone
            ):
                return  # another daemon is cloning it
            await self._clone_under_lease(repository)
        finally:
            self._clone_slots.release()
            self._cloning.discard(repository.lower())
            with contextlib.suppress(Exception):
                await self.store.drop_lease(lease, self.owner)

    async def _clone_under_lease(self, repository: str) -> None:
        registered = await self.store.registration(repository)
        if registered is None or registered.status != "cloning":
            return
        name = registered.repository
        clone_url = self.projects.clone_url(Project(repository=name))
        started = time.monotonic()
        try:
            async with asyncio.timeout(CLONE_TIMEOUT):
                await self.repositories.clone(name, clone_url, registered.token)
        except (CheckoutError, TimeoutError) as error:
            masker = SecretMasker([registered.token] if registered.token else [])
            reason = masker.mask_text(str(error) or f"timed out after {CLONE_TIMEOUT:g} s")
            log.warning("clone failed", repository=name, reason=reason)
            await self.store.set_registration_status(
                name, "clone_failed", reason, only_from="cloning"
            )
            if registered.token is not None and refuses_credentials(str(error)):
                self.token_rejected(name)
            return
        await self.store.set_registration_status(name, "ready", only_from="cloning")
        log.info("cloned", repository=name, duration_s=round(time.monotonic() - started, 3))

    async def check_access_once(self) -> None:
        """Re-check the registrations not checked for `access_check_interval` (periodic job)."""
        due = time.time() - self.access_check_interval
        for registered in await self.store.registrations():
            if registered.installation_id is not None:
                continue  # the App's installation says (runner.registrations.installations)
            if registered.status != "disabled" and registered.access_checked_at <= due:
                await self.check_access(registered)

    def token_rejected(self, repository: str) -> None:
        """GitHub answered 401 for the repository's stored token: check its access now."""
        if repository.lower() in self._checking:
            return
        self._checking.add(repository.lower())  # now: a burst of 401s starts one check

        async def check() -> None:
            try:
                registered = await self.store.registration(repository)
                if registered is not None and registered.status != "disabled":
                    await self.check_access(registered)
            finally:
                self._checking.discard(repository.lower())

        self._spawn(check(), f"access check {repository}")

    async def check_access(self, registered: RegisteredRepository) -> None:
        """Disable the registration unless its token still has write access (what registering
        needed: read alone would keep a registrant of a public repository forever)."""
        name = registered.repository
        self._checking.add(name.lower())
        try:
            if registered.token is None:
                await self.disable(registered, ACCESS_REVOKED)
                return
            self.access.forget(registered.token)  # ask GitHub, not the cache
            try:
                found = await self.access.repository(registered.token, name)
            except TokenRejected:
                found = None
            except GitHubUnavailable:
                log.warning("access check postponed: GitHub unavailable", repository=name)
                return
            if found is None or not found.allows("WRITE"):
                await self.disable(registered, ACCESS_REVOKED)
            else:
                await self.store.access_checked(name, time.time(), registered.webhook_uid)
        finally:
            self._checking.discard(name.lower())

    async def disable(self, registered: RegisteredRepository, reason: str) -> None:
        name = registered.repository
        stopping = await self.store.disable_registration(name, reason, registered.webhook_uid)
        if stopping is None:
            return  # registered again meanwhile: that registration is not the one checked
        await self._remove_files(name)
        log.warning("repository disabled", repository=name, reason=reason)

    async def remove(self, registered: RegisteredRepository) -> None:
        name = registered.repository
        if registered.token and registered.hook_id:  # first: nothing may keep GitHub sending
            await self.access.delete_hook(registered.token, name, registered.hook_id)
        await self.store.remove_registration(name)
        await self._remove_files(name)
        log.info("repository removed", repository=name)

    async def _remove_files(self, repository: str) -> None:
        """Delete the mirror and workspace; a failure is logged, never the caller's error."""
        try:
            await self.repositories.remove(repository)
        except OSError as error:
            log.error(
                "could not delete a repository's files; delete them by hand",
                repository=repository,
                error=type(error).__name__,
                path=str(getattr(error, "filename", "")),
            )

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
