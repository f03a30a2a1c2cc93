"""Which repositories Hobotnica builds, and where each is cloned from.

Three kinds, looked up in this order:
- projects of the config file (`[[projects]]`);
- *local* repositories that `hobotnica try` creates: bare repositories under
  `{data_dir}/local/NAME.git`, known as `local/NAME`, cloned from disk and never reported to
  GitHub. Only the operator can create one (it needs the data directory), and a webhook for
  `local/NAME` still needs a valid signature;
- repositories registered through the REST API, stored in the database with their owner's and
  their own variables. Their webhooks arrive at their own URL (`/webhooks/{uid}`), never at the
  global one, so `find` (the global webhook's lookup) does not return them; `resolve` does.
"""

from collections.abc import Callable, Iterable
from pathlib import Path

from runner.core.masking import Secret, SecretMasker
from runner.core.names import is_repository_name
from runner.core.notification_settings import notification_settings
from runner.core.settings import Project, Settings
from runner.store import RegisteredRepository, Store, Variables

LOCAL_OWNER = "local"


class ProjectDirectory:
    def __init__(
        self, settings: Settings, store: Store | None = None, *, own_secrets: Iterable[Secret] = ()
    ) -> None:
        self._settings = settings
        self._store = store
        # The daemon's own credentials: no build is given them, but one without the sandbox can
        # read them (its daemon's environment, the session key file), so every output masks them.
        github = settings.github
        own: list[Secret] = [s for s in (github.token, github.webhook_secret) if s]
        # The App's private key, line by line (a build that prints the file shows lines).
        key_lines = (github.app_private_key or "").splitlines()
        own += [line for line in key_lines if len(line) >= 32 and "-----" not in line]
        # Where notifications go, and their signing secret: a receiver's URL is its credential.
        for notify in (settings.notifications, *(p.notify for p in settings.projects)):
            own += notify.secrets()
        self._own_secrets = (*own, *own_secrets)
        # The credentials that change while the daemon runs (a GitHub App's installation tokens).
        self.current_secrets: Callable[[], Iterable[Secret]] = tuple

    def masker(self, project: Project | None) -> SecretMasker:
        """Masks what a build's output or a page could show: the project's secrets, its token,
        and the daemon's own credentials."""
        secrets: list[Secret] = [*self._own_secrets, *self.current_secrets()]
        if project is not None:
            secrets += project.secrets.values()
            secrets += project.notify.secrets()
            if project.token:
                secrets.append(project.token)
        return SecretMasker(secrets)

    @property
    def local_root(self) -> Path:
        return self._settings.data_dir / LOCAL_OWNER

    def find(self, repository: str) -> Project | None:
        """A project of the config file or a local repository (what the global webhook builds)."""
        if not is_repository_name(repository):
            return None
        project = self._settings.project(repository)
        if project is not None:
            return project
        owner, name = repository.split("/")
        if owner == LOCAL_OWNER and self.local_path(name).is_dir():
            return Project(repository=f"{LOCAL_OWNER}/{name}")
        return None

    async def resolve(self, repository: str) -> Project | None:
        """Any project, registered ones included, with its current variables."""
        project = self.find(repository)
        if project is not None or self._store is None or not is_repository_name(repository):
            return project
        found = await self._store.registration_with_variables(repository)
        if found is None or found[0].status == "disabled":
            return None  # cloning or clone_failed still build: the build's fetch clones
        return _registered_project(*found)

    async def registered_project(self, registered: RegisteredRepository) -> Project:
        assert self._store is not None
        variables = await self._store.build_variables(registered)
        return _registered_project(registered, variables)

    def is_configured(self, repository: str) -> bool:
        """A project of the config file or a local repository (not an API registration)."""
        return self.find(repository) is not None

    def can_build_here(self, repository: str) -> bool:
        """A local repository lives in one node's data directory: only that node builds it."""
        return not self.is_local(repository) or self.find(repository) is not None

    def local_path(self, name: str) -> Path:
        return self.local_root / f"{name}.git"

    def is_local(self, repository: str) -> bool:
        return (
            repository.split("/")[0] == LOCAL_OWNER and self._settings.project(repository) is None
        )

    def clone_url(self, project: Project) -> str:
        if self.is_local(project.repository):
            return self.local_path(project.repository.split("/")[1]).resolve().as_uri()
        return f"{self._settings.github.git_url}/{project.repository}.git"


def _registered_project(registered: RegisteredRepository, variables: Variables) -> Project:
    return Project(
        repository=registered.repository,
        deploy_branch=registered.deploy_branch,
        env=variables.env,
        secrets=variables.secrets,
        deploy_enabled=registered.deploy_enabled,
        timeout=registered.timeout,
        token=registered.token,
        schedule=registered.schedule,
        schedule_timezone=registered.schedule_timezone,
        schedule_branch=registered.schedule_branch,
        notify=notification_settings(registered.notify),
    )
