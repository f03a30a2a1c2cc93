"""Retention: finished builds past `builds.keep_days`, or beyond the newest
`builds.keep_per_repository` of their repository, are deleted with their logs, and the database
gives the space back (incremental vacuum). Git mirrors are compacted (`git gc --auto`) here too,
not after each fetch, where it would delay a build.

With a store several nodes share, whichever node prunes first deletes the rows; every node
then removes its own files of builds the store no longer has (logs it wrote, copies it read)."""

import asyncio
import time
from pathlib import Path

import structlog

from runner.core.git import Repositories
from runner.core.links import log_copies, log_path
from runner.core.settings import BuildSettings
from runner.store import Store

log = structlog.get_logger(logger_name="hobotnica.retention")

INTERVAL = 3600.0


class Retention:
    def __init__(
        self, store: Store, data_dir: Path, builds: BuildSettings, repositories: Repositories
    ) -> None:
        self._store = store
        self._data_dir = data_dir
        self._builds = builds
        self._repositories = repositories

    async def run_once(self) -> list[int]:
        pruned = await self._store.prune(
            older_than=time.time() - self._builds.keep_days * 86400,
            keep_per_repository=self._builds.keep_per_repository,
        )
        await asyncio.to_thread(self._remove_logs, pruned)
        if self._store.is_shared:
            await self._remove_files_of_forgotten_builds()
        if pruned:
            log.info("pruned old builds", count=len(pruned))
        await self._repositories.compact_mirrors()
        return pruned

    def _remove_logs(self, build_ids: list[int]) -> None:
        for build_id in build_ids:
            log_path(self._data_dir, build_id).unlink(missing_ok=True)

    async def _remove_files_of_forgotten_builds(self) -> None:
        files = await asyncio.to_thread(self._local_build_files)
        known = await self._store.get_builds(list(files))
        await asyncio.to_thread(self._remove, [files[i] for i in files if i not in known])

    def _local_build_files(self) -> dict[int, list[Path]]:
        files: dict[int, list[Path]] = {}
        for folder in (log_path(self._data_dir, 0).parent, log_copies(self._data_dir)):
            for path in folder.glob("*.*") if folder.is_dir() else ():
                if path.stem.isdigit():
                    files.setdefault(int(path.stem), []).append(path)
        return files

    @staticmethod
    def _remove(groups: list[list[Path]]) -> None:
        for group in groups:
            for path in group:
                path.unlink(missing_ok=True)
