"""What this host gives builds: a cgroup tree (or none) and the user they run as (or the daemon's).

Found once at start, said once in the log (check-config says it too), and used to end what an
interrupted build left behind: its cgroup, and the processes that carry its marker.
"""

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from runner.core.links import build_url
from runner.core.settings import Settings
from runner.executor.account import BuildAccount, tighten_data_dir
from runner.executor.cgroups import CgroupTree, build_cgroup_name, end_now, find_cgroup_tree
from runner.executor.reaper import end_tree, marker_for
from runner.store import RecoveredBuild

log = structlog.get_logger(logger_name="hobotnica")


@dataclass(frozen=True)
class BuildHost:
    settings: Settings
    cgroups: CgroupTree | None
    account: BuildAccount | None

    @classmethod
    async def prepare(cls, settings: Settings) -> "BuildHost":
        cgroups, where = await asyncio.to_thread(find_cgroup_tree, settings.server.public_url)
        if cgroups is None:
            log.warning(
                "builds get no cgroup of their own: no memory or process limits; a build is "
                "ended by its process group, its marker and the sandbox",
                reason=where,
            )
        else:
            log.info("builds run in cgroups of their own", where=where)
        account = None
        if settings.builds.user is not None:
            setpriv = shutil.which("setpriv") or "setpriv"
            account = BuildAccount(settings.builds.user, setpriv=setpriv)
            await asyncio.to_thread(tighten_data_dir, settings.data_dir)
            log.info("builds run as another user", user=settings.builds.user.name)
        return cls(settings, cgroups, account)

    async def end_leftovers(self, recovered: Sequence[RecoveredBuild]) -> None:
        """Interrupted builds' processes may have outlived the daemon that started them."""
        settings = self.settings
        for build in recovered:
            log.warning(
                "recovered an interrupted build", build_id=build.id, requeued=build.requeued
            )
            if self.cgroups is not None:
                left = self.cgroups.existing(build_cgroup_name(build.id, build.attempt))
                if left is not None:
                    await asyncio.to_thread(end_now, left)
            marker = marker_for(build_url(settings.server.public_url, build.id), build.attempt)
            for process in await end_tree(None, marker, settings.builds.kill_grace):
                log.warning(
                    "ended a process left by an interrupted build",
                    build_id=build.id,
                    pid=process.pid,
                    command=process.command,
                )

    async def release(self) -> None:
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.release)
