"""Registration by installation (`github.auto_register`): the repositories a GitHub App is
installed on are the repositories it builds.

GitHub's word is asked, not the events' contents: an `installation` or
`installation_repositories` delivery only says which installation to look at again, and what
that installation covers now is listed (`GET /installation/repositories` with its token). The
same look runs for every installation (`GET /app/installations` with the App's JWT) at start
and with the periodic registrations job, so an event missed while no daemon ran, or a delivery
recorded by a daemon that stopped before acting on it, changes nothing for long.

- A repository the installation covers, within `api.allowed_owners`, not a project of the
  config and not registered already, is registered (`cloning`, then cloned with the
  installation's token) with the installation's id and no token of its own.
- A repository registered by an installation that no longer covers it (removed from it, the
  App uninstalled or the installation suspended, as `GET /app/installations/{id}` says with the
  App's JWT), or whose owner left `api.allowed_owners`, is retired as an API removal retires
  one: its builds stop, its files and variables go. An answer GitHub could not give (a rate
  limit, an outage) retires nothing.
Registrations made through the API with a token are never touched here.
"""

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import gidgethub
import structlog

from runner.core.github_identity import GitHubApp, GitHubUnreachable
from runner.core.names import is_branch_name, is_repository_name
from runner.registrations.registrations import Registrations
from runner.store import Registration, Store

log = structlog.get_logger(logger_name="hobotnica.installations")

REGISTERED_BY = "github-app"


@dataclass(frozen=True)
class Covered:
    repository: str
    default_branch: str


@dataclass
class Installations:
    app: GitHubApp
    store: Store
    registrations: Registrations
    allowed_owners: tuple[str, ...]
    is_configured: Callable[[str], bool]
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def installation_changed(self, installation_id: int) -> None:
        """An installation event was recorded: look at that installation again, now."""
        task = asyncio.create_task(self._logged(self.look_at(installation_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def look_at_all(self) -> None:
        """Every installation of the App (the periodic job, and at start)."""
        try:
            listed = [
                int(found["id"])
                async for found in self.app.api().getiter(
                    "/app/installations?per_page=100", jwt=self.app.jwt()
                )
            ]
        except (gidgethub.GitHubException, OSError, TimeoutError, ValueError) as error:
            log.warning("cannot list the App's installations", error=type(error).__name__)
            return
        registered = await self.store.registrations()
        known = {r.installation_id for r in registered if r.installation_id is not None}
        for installation_id in sorted(set(listed) | known):
            await self.look_at(installation_id)

    async def look_at(self, installation_id: int) -> None:
        async with self._lock:  # one look at a time: two would register the same repository
            covered = await self._covered(installation_id)
            if covered is None:
                return  # GitHub could not say: change nothing
            await self._retire_uncovered(installation_id, covered)
            await self._register_covered(installation_id, covered)

    async def _covered(self, installation_id: int) -> dict[str, Covered] | None:
        """The repositories the installation covers now: none when GitHub says (with the App's
        JWT) that it is gone or suspended; None when GitHub could not say."""
        state = await self._state(installation_id)
        if state != "active":
            return None if state is None else {}
        for _attempt in range(2):
            try:
                token = await self.app.installation_token(installation_id)
                listed = [
                    found
                    async for found in self.app.api(token).getiter(
                        "/installation/repositories?per_page=100", iterable_key="repositories"
                    )
                ]
            except gidgethub.HTTPException as error:
                if error.status_code.value == 401:  # a cached token revoked meanwhile
                    self.app.token_refused(token)
                    continue
                log.warning("cannot list an installation's repositories", status=str(error))
                return None
            except (GitHubUnreachable, gidgethub.GitHubException) as error:
                log.warning("cannot list an installation's repositories", error=str(error))
                return None
            except (OSError, TimeoutError, ValueError) as error:
                log.warning(
                    "cannot list an installation's repositories", error=type(error).__name__
                )
                return None
            return {c.repository.lower(): c for c in map(_covered_repository, listed) if c}
        return None

    async def _state(self, installation_id: int) -> str | None:
        """ "active", "suspended" or "gone" (`GET /app/installations/{id}`); None: unknown."""
        try:
            found = await self.app.api().getitem(
                f"/app/installations/{installation_id}", jwt=self.app.jwt()
            )
        except gidgethub.HTTPException as error:
            if error.status_code.value == 404:
                return "gone"
            log.warning("cannot ask GitHub about an installation", status=str(error))
            return None
        except (gidgethub.GitHubException, OSError, TimeoutError, ValueError) as error:
            log.warning("cannot ask GitHub about an installation", error=type(error).__name__)
            return None
        return "suspended" if found.get("suspended_at") else "active"

    async def _retire_uncovered(self, installation_id: int, covered: dict[str, Covered]) -> None:
        allowed = {owner.lower() for owner in self.allowed_owners}
        for registered in await self.store.registrations():
            if registered.installation_id != installation_id:
                continue
            still = registered.repository.lower() in covered and registered.owner.lower() in allowed
            if still and registered.status != "disabled":
                continue
            self.app.forget_installation(registered.repository)
            await self.registrations.remove(registered)
            log.info(
                "repository retired: the App's installation no longer covers it",
                repository=registered.repository,
                installation_id=installation_id,
            )

    async def _register_covered(self, installation_id: int, covered: dict[str, Covered]) -> None:
        allowed = {owner.lower() for owner in self.allowed_owners}
        for found in covered.values():
            name = found.repository
            if name.split("/")[0].lower() not in allowed or self.is_configured(name):
                continue
            new = Registration(
                repository=name,
                webhook_uid=secrets.token_urlsafe(32),
                webhook_secret=secrets.token_urlsafe(32),
                default_branch=found.default_branch,
                deploy_branch=None,
                deploy_enabled=True,
                timeout=None,
                registered_by=REGISTERED_BY,
                token=None,
                installation_id=installation_id,
            )
            if await self.store.register(new) is None:
                continue  # registered already (through the API, or by this installation)
            self.app.remember_installation(name, installation_id)
            log.info("repository registered by the App's installation", repository=name)
            self.registrations.clone_in_background(name)

    @staticmethod
    async def _logged(work: Any) -> None:
        try:
            await work
        except Exception:
            log.exception("looking at an installation failed")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)


def registered_by_installation(store: Store) -> Callable[[str], Awaitable[bool]]:
    """Whether a repository is registered by an installation (its statuses go as the App)."""

    async def installed(repository: str) -> bool:
        registered = await store.registration(repository)
        return (
            registered is not None
            and registered.installation_id is not None
            and registered.status != "disabled"
        )

    return installed


def _covered_repository(found: Any) -> Covered | None:
    name = found.get("full_name") if isinstance(found, dict) else None
    if not isinstance(name, str) or not is_repository_name(name):
        return None
    branch = found.get("default_branch")
    return Covered(name, branch if is_branch_name(branch) else "")
