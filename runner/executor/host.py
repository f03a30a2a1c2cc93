"""What this host gives builds: a cgroup tree (or none) and the user they run as (or the daemon's).

Found once at start, said once in the log (check-config says it too), and used to end what an
interrupted build left behind: its cgroup, and the processes that carry its marker.
"""

import asyncio
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from runner.core.links import build_url
from runner.core.models import BuildState
from runner.core.settings import Settings
from runner.executor.account import BuildAccount, tighten_data_dir
from runner.executor.cgroups import (
    CgroupTree,
    build_cgroup_name,
    end_now,
    find_cgroup_tree,
    parse_build_cgroup_name,
)
from runner.executor.reaper import end_tree, marked_attempts, marker_for
from runner.store import RecoveredBuild, Store

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
        for build in recovered:
            log.warning(
                "recovered an interrupted build", build_id=build.id, requeued=build.requeued
            )
            await self._end_attempt(
                build.id, build.attempt, "ended a process left by an interrupted build"
            )

    async def end_orphans(self, store: Store, is_gone: Callable[[str | None], bool]) -> None:
        """At start: end what this installation's builds left on this host that no live daemon
        runs. A node killed while building leaves its processes behind; by the time it starts
        again another node may have taken those builds over, so recovery never names them.
        Listed before the store is read: a process seen then belongs to a claim already made.
        """
        left = await asyncio.to_thread(self._attempts_on_host)
        if not left:
            return
        builds = await store.get_builds({build_id for build_id, _ in left})
        for build_id, attempt in sorted(left):
            build = builds.get(build_id)
            if (
                build is not None
                and build.state is BuildState.RUNNING
                and build.attempt == attempt
                and not is_gone(build.lease_owner)
            ):
                continue  # another daemon of this installation on this host runs it now
            await self._end_attempt(build_id, attempt, "ended a process left by a lost build")

    def _attempts_on_host(self) -> set[tuple[int, int]]:
        prefix = build_url(self.settings.server.public_url, 0).removesuffix("0")
        found = set()
        for url, attempt in marked_attempts(prefix):
            if url.removeprefix(prefix).isdigit():
                found.add((int(url.removeprefix(prefix)), attempt))
        for name in self.cgroups.names() if self.cgroups is not None else ():
            if parsed := parse_build_cgroup_name(name):
                found.add(parsed)
        return found

    async def _end_attempt(self, build_id: int, attempt: int, message: str) -> None:
        settings = self.settings
        if self.cgroups is not None:
            left = self.cgroups.existing(build_cgroup_name(build_id, attempt))
            if left is not None:
                await asyncio.to_thread(end_now, left)
        marker = marker_for(build_url(settings.server.public_url, build_id), attempt)
        for process in await end_tree(None, marker, settings.builds.kill_grace):
            log.warning(message, build_id=build_id, pid=process.pid, command=process.command)

    async def release(self) -> None:
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.release)
