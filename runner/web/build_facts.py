"""What a final check run tells of a build (`runner.core.checks.BuildFacts`): read from the store
and the build's log, masked with the project's secrets, without terminal escapes."""

import asyncio
import os
from pathlib import Path

from runner.core.checks import BuildFacts
from runner.core.git import Repositories
from runner.core.instance import node_of
from runner.core.masking import SecretMasker
from runner.store import OutboxItem, Store
from runner.store.projects import ProjectDirectory
from runner.web.ansi import plain
from runner.web.log_files import LogFiles

TAIL_BYTES = 256 * 1024  # enough for the last lines and the compiler diagnostics before them
NOTIFICATION_TAIL_BYTES = 16 * 1024


class BuildFactsReader:
    def __init__(
        self, store: Store, logs: LogFiles, projects: ProjectDirectory, repositories: Repositories
    ) -> None:
        self._store = store
        self._logs = logs
        self._projects = projects
        self._repositories = repositories

    async def __call__(self, item: OutboxItem) -> tuple[BuildFacts, str] | None:
        build = await self._store.get_build(item.build_id)
        if build is None:
            return None
        masker = self._projects.masker(await self._projects.resolve(build.repository))
        tail = await self._masked_tail(build.id, masker, TAIL_BYTES)
        duration = None
        if build.started_at is not None and build.finished_at is not None:
            duration = build.finished_at - build.started_at
        facts = BuildFacts(
            job=build.request.job.value,
            duration_s=duration,
            node=node_of(build.ran_on),
            log_tail=tail,
        )
        return facts, str(self._repositories.workspace_path(build.repository).resolve())

    async def tail(self, build_id: int, masker: SecretMasker) -> str:
        """The last lines of a build's log (a notification's), masked, without escapes."""
        return await self._masked_tail(build_id, masker, NOTIFICATION_TAIL_BYTES)

    async def _masked_tail(self, build_id: int, masker: SecretMasker, limit: int) -> str:
        tail = await asyncio.to_thread(_tail, await self._logs.path(build_id), limit)
        return masker.mask_text(plain(tail))


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            file.seek(max(0, size - limit))
            data = file.read()
    except FileNotFoundError:
        return ""
    if len(data) == limit:  # began mid-line: from the next whole line
        data = data[data.find(b"\n") + 1 :]
    return data.decode("utf-8", "replace")
