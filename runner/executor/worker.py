"""One build from claim to final state: checkout, `make <job>`, log, status, deploy hand-off.

This is one of the two places allowed a broad `except`: whatever goes wrong inside a build, the
traceback is logged, the build ends `error`, and the daemon goes on.
"""

import asyncio
import contextlib
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from runner.core import statuses
from runner.core.errors import CheckoutError, StoreUnavailable, refuses_credentials
from runner.core.git import Repositories
from runner.core.links import build_url, has_skip_marker, log_path
from runner.core.masking import SecretMasker
from runner.core.metrics import Metrics
from runner.core.models import Build, Job
from runner.core.settings import Project, Settings
from runner.core.statuses import Status
from runner.executor.account import BuildAccount
from runner.executor.cgroups import BuildCgroup, CgroupTree, build_cgroup_name
from runner.executor.environment import build_environment
from runner.executor.log_shipping import LogShipper
from runner.executor.logfile import BuildLog
from runner.executor.process import HeldStart, MakeOutcome, hold_start, run_make
from runner.executor.reaper import marker_for
from runner.executor.sandbox import Sandbox
from runner.scheduling.stop import StopRequest
from runner.store import Store
from runner.store.projects import ProjectDirectory

log = structlog.get_logger(logger_name="hobotnica.build")

# How often a running build's cgroup is asked whether the kernel ended a process for memory.
OUT_OF_MEMORY_POLL = 0.25
# Backoff while a build's result cannot be written (seconds).
RESULT_RETRY_FIRST = 0.5
RESULT_RETRY_MAX = 30.0


@dataclass
class _Timing:
    make_started_at: float | None = None  # when `make` started, if it did


@dataclass
class _Command:
    """How make starts: its argv and environment, its cgroup, and its first process, started
    and held in the cgroup while the checkout runs."""

    argv: list[str]
    env: dict[str, str]
    cgroup: BuildCgroup | None
    held: "asyncio.Task[HeldStart] | None"


@dataclass
class BuildWorker:
    settings: Settings
    store: Store
    projects: ProjectDirectory
    repositories: Repositories
    sandbox: Sandbox
    owner: str
    metrics: Metrics
    # A registration's own token was refused by the git server: its access is to be checked.
    on_credentials_refused: Callable[[str], None] = lambda _repository: None
    # Where builds get their cgroups (None: the host gives none) and the user they run as.
    cgroups: CgroupTree | None = None
    account: BuildAccount | None = None

    async def run(self, build: Build, stop: StopRequest) -> None:
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            build_id=build.id, repository=build.repository, sha=build.sha, job=build.job.value
        ):
            timing = _Timing()
            try:
                status, exit_code = await self._run(build, stop, timing)
            except Exception:
                log.exception("build crashed")
                status, exit_code = statuses.errored("Internal error; see the daemon log"), None
            deploy_id = await self._record_result(build, status, exit_code)
            self.metrics.builds.labels(build.job.value, status.state.value).inc()
            # The canonical line of a build: one per finished build, everything an operator
            # asks about it (repository, job, sha and build_id are bound above).
            make_started_at = timing.make_started_at
            log.info(
                "build finished",
                state=status.state.value,
                description=status.description,
                exit_code=exit_code,
                attempt=build.attempt,
                duration_s=round(time.monotonic() - started, 3),
                queue_wait_s=round((build.started_at or build.queued_at) - build.queued_at, 3),
                push_to_start_s=(
                    round(make_started_at - build.received_at, 3) if make_started_at else None
                ),
                deploy_build_id=deploy_id,
            )

    async def _run(
        self, build: Build, stop: StopRequest, timing: _Timing
    ) -> tuple[Status, int | None]:
        project = await self.projects.resolve(build.repository)
        if project is None:
            return statuses.errored("Repository is no longer registered"), None
        if build.job is Job.DEPLOY and not project.deploy_enabled:
            # Deploys were turned off after this one was queued (PATCH jobs: [test]).
            return statuses.errored("Not deployed: deploys are off for this repository"), None
        masker = self.projects.masker(project)
        path = log_path(self.settings.data_dir, build.id)
        build_log = BuildLog(path, self.settings.builds.max_log_bytes)
        shipper = None
        if self.store.is_shared:  # other nodes show this build's page and live log too
            shipper = LogShipper(self.store, path, build.id, build.attempt)
            shipper.start()
        try:
            request = build.request
            what = f"pull request #{request.pull_request}" if request.pull_request else request.ref
            build_log.note(
                f"build {build.id}: make {build.job.value} for {build.repository} "
                f"{request.sha} ({masker.mask_text(what)}), attempt {build.attempt}"
            )
            mirror = self.repositories.mirror_path(build.repository)
            workspace = self.repositories.workspace_path(build.repository)
            env = build_environment(
                inherited=self.settings.inherited_env,
                build=build,
                project=project,
                public_url=self.settings.server.public_url,
            )
            argv = self.sandbox.command(
                ["make", build.job.value], workspace=workspace, mirror_objects=mirror / "objects"
            )
            if self.account is not None:
                argv, env = self.account.command(argv), self.account.environment(env)
            async with self._cgroup(build, stop) as cgroup:
                # make's first process is started and placed in the cgroup while the checkout
                # runs (placing waits for the kernel); it runs nothing until released.
                held = None
                if cgroup is not None:
                    await asyncio.to_thread(workspace.mkdir, parents=True, exist_ok=True)
                    held = asyncio.create_task(
                        hold_start(cgroup, argv, workspace=workspace, env=env)
                    )
                try:
                    command = _Command(argv, env, cgroup, held)
                    return await self._check_out_and_make(
                        build, project, stop, build_log, masker, command, timing
                    )
                finally:
                    if held is not None:
                        await _let_go(held)
        finally:
            build_log.close()
            if shipper is not None:
                await shipper.close()

    async def _check_out_and_make(
        self,
        build: Build,
        project: Project,
        stop: StopRequest,
        build_log: BuildLog,
        masker: SecretMasker,
        command: "_Command",
        timing: _Timing,
    ) -> tuple[Status, int | None]:
        request, cgroup, held = build.request, command.cgroup, command.held
        try:
            workspace = await self._checkout(build, project, stop)
        except CheckoutError as error:
            if stop.reason is not None:  # superseded while fetching: say that, plainly
                build_log.note(f"stopped during checkout: {stop.reason}")
                return statuses.errored(stop.reason), None
            reason = masker.mask_text(str(error))
            build_log.note(f"checkout failed: {reason}")
            if project.token is not None and refuses_credentials(str(error)):
                self.on_credentials_refused(build.repository)
            return statuses.errored(f"Checkout failed: {reason}"), None
        if not request.message:
            message, author = await self.repositories.commit_info(build.repository, request.sha)
            await self.store.set_commit_info(build.id, message, author)
            if request.pull_request is not None and has_skip_marker(message):
                build_log.note("not built: [skip ci] in the head commit message")
                # Never `success`: anyone who can open a pull request could turn a required
                # check green without running it.
                return statuses.errored("Not built: [skip ci] in the head commit"), None
        if stop.reason is not None:
            build_log.note(f"not started: {stop.reason}")
            return statuses.errored(stop.reason), None
        build_log.note(f"checked out {request.sha}; running make {build.job.value}")
        mirror = self.repositories.mirror_path(build.repository)
        url = build_url(self.settings.server.public_url, build.id)
        async with self._lent(workspace, mirror):
            outcome = await run_make(
                command.argv,
                workspace=workspace,
                env=command.env,
                timeout=self._timeout(project),
                kill_grace=self.settings.builds.kill_grace,
                log=build_log,
                masker=masker,
                marker=marker_for(url, build.attempt),
                stop=stop,
                cgroup=cgroup,
                held=None if held is None else await held,
            )
            out_of_memory = cgroup is not None and cgroup.oom_kills() > 0
        timing.make_started_at = outcome.started_at
        self._report_leftovers(build_log, outcome)
        self._measure(build, outcome)
        if out_of_memory:
            limit = self.settings.builds.memory_max or 0
            reason = statuses.out_of_memory(limit)
            build_log.note(f"{reason}: the kernel ended a process of the build")
            return statuses.errored(reason), outcome.exit_code
        return self._status(build, project, outcome, build_log), outcome.exit_code

    @contextlib.asynccontextmanager
    async def _cgroup(self, build: Build, stop: StopRequest) -> AsyncIterator[BuildCgroup | None]:
        """The build's cgroup, if the host has one; a build over its memory is stopped at once."""
        limits = self.settings.builds
        if self.cgroups is None:
            yield None
            return
        name = build_cgroup_name(build.id, build.attempt)
        cgroup = await asyncio.to_thread(
            self.cgroups.create, name, memory_max=limits.memory_max, tasks_max=limits.tasks_max
        )
        watch = None
        if limits.memory_max is not None:
            watch = asyncio.create_task(_stop_when_out_of_memory(cgroup, stop, limits.memory_max))
        try:
            yield cgroup
        finally:
            if watch is not None:
                watch.cancel()
            # run_make has ended every process of the build by now.
            await asyncio.shield(asyncio.to_thread(cgroup.remove))

    @contextlib.asynccontextmanager
    async def _lent(self, workspace: Path, mirror: Path) -> AsyncIterator[None]:
        """The workspace lent to the build user (if builds run as one) while make runs."""
        if self.account is None:
            yield
            return
        await asyncio.to_thread(self.account.lend, workspace, mirror)
        try:
            yield
        finally:
            await asyncio.shield(asyncio.to_thread(self.account.take_back, workspace, mirror))

    async def _record_result(
        self, build: Build, status: Status, exit_code: int | None
    ) -> int | None:
        """Write the build's result, however long the store cannot write (a full disk).

        The build keeps its lease meanwhile (the scheduler's heartbeat renews it once the store
        writes again), so its result is the one make gave, never a re-run because the daemon
        seemed to have lost it.
        """
        delay = RESULT_RETRY_FIRST
        while True:
            try:
                return await self.store.finish_build(
                    build.id, status, exit_code, self.owner, build.attempt
                )
            except StoreUnavailable as error:
                log.warning(
                    "cannot record the build's result yet; retrying",
                    state=status.state.value,
                    error=str(error),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESULT_RETRY_MAX)

    def _timeout(self, project: Project) -> float:
        """A registration may shorten the operator's timeout, never lengthen it."""
        return min(project.timeout or self.settings.builds.timeout, self.settings.builds.timeout)

    def _status(
        self, build: Build, project: Project, outcome: MakeOutcome, build_log: BuildLog
    ) -> Status:
        if outcome.stopped is not None:
            build_log.note(f"stopped: {outcome.stopped}")
            return statuses.errored(outcome.stopped)
        if outcome.timed_out:
            reason = statuses.timed_out(self._timeout(project))
            build_log.note(reason)
            return statuses.errored(reason)
        assert outcome.exit_code is not None
        build_log.note(
            f"make {build.job.value} exited {outcome.exit_code} after {outcome.duration:.2f} s"
        )
        if outcome.exit_code == 0:
            return statuses.succeeded(build.job, outcome.duration)
        return statuses.failed(build.job, outcome.exit_code, outcome.duration)

    async def _checkout(self, build: Build, project: Project, stop: StopRequest) -> Path:
        """The checkout, bounded by the build's timeout and ended by a stop request."""
        checkout = asyncio.create_task(
            self.repositories.checkout(
                build.request, self.projects.clone_url(project), project.token
            )
        )
        stopped = asyncio.create_task(stop.wait())
        timeout = self._timeout(project)
        try:
            await asyncio.wait({checkout, stopped}, timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not checkout.done():
                checkout.cancel()  # kills the git process under it
                with contextlib.suppress(asyncio.CancelledError, CheckoutError):
                    await checkout
        if checkout.cancelled():
            raise CheckoutError(stop.reason or f"timed out after {timeout:g} s")
        return checkout.result()

    def _measure(self, build: Build, outcome: MakeOutcome) -> None:
        job = build.job.value
        self.metrics.push_to_start.labels(job).observe(outcome.started_at - build.received_at)
        if build.started_at is not None:
            self.metrics.queue_wait.labels(job).observe(build.started_at - build.queued_at)
        self.metrics.duration.labels(job).observe(outcome.duration)

    def _report_leftovers(self, build_log: BuildLog, outcome: MakeOutcome) -> None:
        if not outcome.leftovers:
            return
        names = ", ".join(f"{p.command} (pid {p.pid})" for p in outcome.leftovers)
        build_log.note(f"ended processes the build left running: {names}")
        log.warning("build left processes behind", processes=names)


async def _let_go(held: "asyncio.Task[HeldStart]") -> None:
    """A held first process that make did not take (the build ended before it) goes."""
    if not held.done():
        held.cancel()  # hold_start ends what it started
        await asyncio.wait({held})
    if held.cancelled() or held.exception() is not None:
        return  # nothing was held; an error starting it was run_make's to raise, if it ran
    await asyncio.shield(held.result().abandon())


async def _stop_when_out_of_memory(cgroup: BuildCgroup, stop: StopRequest, limit: int) -> None:
    """The kernel ended a process of the build for its memory: the whole build ends now."""
    while not cgroup.oom_kills():  # noqa: ASYNC110 - the count is a file, nothing to wait on
        await asyncio.sleep(OUT_OF_MEMORY_POLL)
    stop.stop(statuses.out_of_memory(limit))
