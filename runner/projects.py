"""Which repositories Hobotnica builds, and where each is cloned from.

Projects come from the config file. Besides those, `hobotnica try` creates *local* repositories:
bare repositories under `{data_dir}/local/NAME.git`, known as `local/NAME`, cloned from disk and
never reported to GitHub. Only the operator can create one (it needs the data directory), and a
webhook for `local/NAME` still needs a valid signature.
"""

from pathlib import Path

from runner.names import is_repository_name
from runner.settings import Project, Settings

LOCAL_OWNER = "local"


class ProjectDirectory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def local_root(self) -> Path:
        return self._settings.data_dir / LOCAL_OWNER

    def find(self, repository: str) -> Project | None:
        if not is_repository_name(repository):
            return None
        project = self._settings.project(repository)
        if project is not None:
            return project
        owner, name = repository.split("/")
        if owner == LOCAL_OWNER and self.local_path(name).is_dir():
            return Project(repository=f"{LOCAL_OWNER}/{name}")
        return None

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
