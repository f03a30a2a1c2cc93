"""The repositories the pages know of, and what a page may show of each.

One place to ask, so that adding a source of repositories (the REST API's registrations) or
making the project lookup asynchronous changes this class and nothing that uses it:

- `repositories()`: the configured projects, the REST API's registrations (not disabled), and
  every repository that has builds in the store, sorted case-insensitively, each under one
  spelling (the config's, else the registration's, else the store's).
- `masker(repository)`: every text a page shows — log, commit message, branch, author,
  description — goes through the project's `SecretMasker`.
- `default_branch(repository)`: the configured deploy branch; for a local repository (`hobotnica
  try`), the branch its bare repository's HEAD names, which `try` points at the branch it tried;
  else the branch the newest deploy-bound push went to (the repository's default branch as
  GitHub reported it), else None.
"""

import asyncio
from pathlib import Path

from runner.core.masking import SecretMasker
from runner.core.names import is_branch_name
from runner.core.settings import Settings
from runner.store import Store
from runner.store.projects import ProjectDirectory


class RepositoryCatalog:
    def __init__(self, settings: Settings, store: Store, projects: ProjectDirectory) -> None:
        self._settings = settings
        self._store = store
        self._projects = projects

    async def repositories(self) -> list[str]:
        names = {p.repository.lower(): p.repository for p in self._settings.projects}
        for registered in await self._store.registrations():
            if registered.status != "disabled":
                names.setdefault(registered.repository.lower(), registered.repository)
        for name in await self._store.repositories_with_builds():
            names.setdefault(name.lower(), name)
        return sorted(names.values(), key=str.lower)

    async def find(self, repository: str) -> str | None:
        """The known spelling of `repository` (GitHub names are case-insensitive), or None."""
        wanted = repository.lower()
        return next((r for r in await self.repositories() if r.lower() == wanted), None)

    async def masker(self, repository: str) -> SecretMasker:
        return self._projects.masker(await self._projects.resolve(repository))

    async def default_branch(self, repository: str) -> str | None:
        project = self._projects.find(repository)
        if project is not None and project.deploy_branch:
            return project.deploy_branch
        if project is not None and self._projects.is_local(repository):
            bare = self._projects.local_path(repository.split("/")[1])
            head = await asyncio.to_thread(_head_branch, bare)
            if head is not None:
                return head
        registered = await self._store.registration(repository)
        if registered is not None and (registered.deploy_branch or registered.default_branch):
            return registered.deploy_branch or registered.default_branch
        return await self._store.deploy_branch_seen(repository)


def _head_branch(bare: Path) -> str | None:
    """The branch a bare repository's HEAD names, if that branch exists (one made before `try`
    pointed HEAD at its branch may still name git's default branch, never pushed)."""
    try:
        head = (bare / "HEAD").read_text(encoding="utf-8").strip()
        branch = head.removeprefix("ref: refs/heads/")
        if branch == head or not is_branch_name(branch):
            return None  # a detached HEAD
        if (bare / "refs" / "heads" / branch).is_file():
            return branch
        packed = (bare / "packed-refs").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # no packed refs either, or not readable
        return None
    return branch if any(line.endswith(f" refs/heads/{branch}") for line in packed) else None
