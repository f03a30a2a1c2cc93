"""The mirror fetches a pushed commit as soon as intake accepts the push.

A push's commit is new to the mirror by definition, and fetching it is most of the way from a
push to `make`. Started at intake, the fetch runs while the delivery is written (fsync) and its
build is claimed, instead of after them; the build's checkout takes the repository's git lock
after it and finds the commit there. Nothing depends on it: a prefetch that fails is the
checkout's to retry and report.

At most one prefetch per repository runs at a time, and one waits behind it: the newest push's
(a burst of pushes fetches twice, not once per push).
"""

import contextlib
from collections.abc import Callable

import structlog

from runner.core.background import BackgroundJobs
from runner.core.errors import CheckoutError
from runner.core.git import Repositories
from runner.core.models import BuildRequest
from runner.store.projects import ProjectDirectory

log = structlog.get_logger(logger_name="hobotnica.build")


class Prefetcher:
    def __init__(
        self,
        repositories: Repositories,
        projects: ProjectDirectory,
        jobs: BackgroundJobs,
        shortage: Callable[[], str | None],
    ) -> None:
        self._repositories = repositories
        self._projects = projects
        self._jobs = jobs
        self._shortage = shortage  # why builds are paused (a full disk): no prefetch either
        self._waiting: dict[str, BuildRequest | None] = {}  # repository → the next to fetch
        self._closed = False

    def accepted(self, request: BuildRequest) -> None:
        """A push or pull request was accepted: fetch its commit into the mirror, now."""
        if self._closed or request.ref.startswith("refs/tags/"):
            return  # a tag build fetches anyway (the tag itself may be new)
        key = request.repository.lower()
        running = key in self._waiting
        self._waiting[key] = request
        if not running:
            self._jobs.keep_running(_job(key), lambda: self._drain(key))

    async def close(self) -> None:
        """At shutdown: no new prefetch, and the ones under way end (their git with them)."""
        self._closed = True
        names = [_job(key) for key in self._waiting]
        if names:  # (none named would close every job of the daemon)
            await self._jobs.close(*names)

    async def _drain(self, key: str) -> None:
        try:
            while (request := self._waiting.get(key)) is not None:
                self._waiting[key] = None
                try:
                    await self._fetch(request)
                except Exception as error:  # the build's checkout will say what is wrong
                    log.info("prefetch failed", repository=key, error=str(error))
        finally:
            self._waiting.pop(key, None)

    async def _fetch(self, request: BuildRequest) -> None:
        if self._shortage() is not None:
            return
        project = await self._projects.resolve(request.repository)
        if project is None or not self._projects.can_build_here(request.repository):
            return
        with contextlib.suppress(CheckoutError):
            await self._repositories.prefetch(
                request, self._projects.clone_url(project), project.token
            )


def _job(key: str) -> str:
    return f"prefetch {key}"
