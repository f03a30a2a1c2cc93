"""Git mirrors and workspaces.

One bare mirror per repository under `{data_dir}/mirrors`, fetched incrementally and only when the
wanted commit is missing. One workspace per repository under `{data_dir}/workspaces`: a working
copy at exactly the build's commit, cleaned of everything earlier builds left behind.

The daemon never runs git against a `.git` a build could have touched (`runner.core.workspace`).
A pushed commit is fetched by the daemon itself where it can (`runner.core.git_wire`), else by
`git fetch`. Git never reads the system or global config here, and the token reaches it only
through the environment
(`GIT_CONFIG_*` → `http.<url>.extraHeader`), never argv, a URL or a file. The token is a
registration's own, or the daemon's identity's for the repository (`github.token`, or a GitHub
App's installation token, asked for only when git is about to talk to an HTTP(S) server and
fetched again once when the server refuses it).

Every git command names its repository (`--git-dir`, and `--work-tree` for a workspace): a
mirror an interrupted `git init` left half made must fail the command, not send git up the
directory tree to whatever repository holds the data directory.
"""

import asyncio
import base64
import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import structlog

from runner.core.errors import CheckoutError, refuses_credentials
from runner.core.git_files import ref_points_at, stored_object
from runner.core.git_upload_pack import CredentialsRefused, WireFetchFailed, upload_pack_for
from runner.core.git_wire import fetch_commit
from runner.core.github_identity import DaemonToken, GitHubIdentity, GitHubUnreachable
from runner.core.models import BuildRequest
from runner.core.names import short_sha
from runner.core.spawn import spawn
from runner.core.workspace import TRASH, Trash, clear_workspace, copy_tags, remove

GIT_OUTPUT_LIMIT = 2000
WIRE_FETCH_LIMIT = 600.0  # then `git fetch`, with its own low-speed limit, tries

log = structlog.get_logger(logger_name="hobotnica.git")


class Repositories:
    def __init__(
        self,
        data_dir: Path,
        *,
        identity: GitHubIdentity | None = None,
        inherited_env: Mapping[str, str],
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._identity = identity or DaemonToken(None)
        self._http = http  # for fetching a pushed commit over smart HTTP (`git_wire`)
        self._base_env = {
            "PATH": inherited_env.get("PATH", os.defpath),
            "LANG": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ASKPASS": "/bin/false",
        }
        self._locks: dict[str, asyncio.Lock] = {}
        self._trash = Trash(data_dir / "workspaces" / TRASH)

    def mirror_path(self, repository: str) -> Path:
        return self._data_dir / "mirrors" / f"{repository.lower()}.git"

    def workspace_path(self, repository: str) -> Path:
        return self._data_dir / "workspaces" / repository.lower()

    def _env(self, clone_url: str, token: str | None) -> dict[str, str]:
        """The fetch's environment: config through GIT_CONFIG_*, never argv or a file."""
        config = {
            # Housekeeping is not a build's business: `compact_mirrors` does it off the way.
            "maintenance.auto": "false",
            "gc.auto": "0",
        }
        if token and clone_url.startswith(("https://", "http://")):
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            config[f"http.{_origin(clone_url)}/.extraHeader"] = f"Authorization: Basic {basic}"
        env = dict(self._base_env, GIT_CONFIG_COUNT=str(len(config)))
        # A stalled transfer (under 1 KB/s for a minute) fails instead of hanging the build.
        env.update(GIT_HTTP_LOW_SPEED_LIMIT="1000", GIT_HTTP_LOW_SPEED_TIME="60")
        for index, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    async def compact_mirrors(self) -> None:
        """`git gc --auto` in every mirror, one at a time, outside any build's critical path."""
        root = self._data_dir / "mirrors"
        mirrors = sorted(root.glob("*/*.git")) if root.is_dir() else []
        for mirror in mirrors:
            name = f"{mirror.parent.name}/{mirror.name.removesuffix('.git')}"
            async with self._lock(name):
                try:
                    await self._git("gc", "--auto", "--quiet", git_dir=mirror, env=self._base_env)
                except CheckoutError as error:
                    log.warning("compacting a mirror failed", mirror=str(mirror), error=str(error))

    async def checkout(
        self, request: BuildRequest, clone_url: str, token: str | None = None
    ) -> Path:
        """A clean working copy of the repository at `request.sha`; returns its path.

        The workspace is emptied, and its new `.git` written (`runner.core.workspace`), while
        the commit is fetched or the fetch under way is waited for."""
        workspace = self.workspace_path(request.repository)
        mirror = self.mirror_path(request.repository)
        cleared = asyncio.create_task(
            asyncio.to_thread(clear_workspace, workspace, mirror, request.sha, self._trash.folder)
        )
        try:
            async with self._lock(request.repository):
                await self._fetch(request, clone_url, token)
                try:
                    await asyncio.shield(cleared)
                except OSError as error:
                    raise CheckoutError(f"cannot empty the workspace: {error}") from None
                copy_tags(workspace, mirror)  # (small files: a thread's hop costs more)
                try:
                    await self._check_out(workspace, request.sha)
                except CheckoutError:
                    # Objects a fetch cut short left behind (a commit without its tree, say):
                    # a whole `git fetch` completes them.
                    refspecs = _BRANCHES_AND_TAGS
                    await self._fetch_remote(
                        request.repository, mirror, clone_url, token, *refspecs
                    )
                    await self._check_out(workspace, request.sha)
        finally:
            if not cleared.done():  # the fetch failed or was stopped: the thread still finishes
                await asyncio.wait([cleared])
            if not cleared.cancelled() and cleared.exception() is None:
                self._trash.remove_later(cleared.result())
        return workspace

    async def close(self) -> None:
        """At shutdown: what earlier builds left is removed before the daemon exits."""
        await self._trash.close()

    async def _check_out(self, workspace: Path, sha: str) -> None:
        # HEAD names the commit already (`clear_workspace`). Not `checkout`: it exits 0 on a
        # missing tree (git 2.39); `read-tree` fails as `reset --hard` does, without its writes.
        args = ("read-tree", "--reset", "-u", sha)
        await self._git(*args, git_dir=workspace / ".git", work_tree=workspace, env=self._base_env)

    async def prefetch(
        self, request: BuildRequest, clone_url: str, token: str | None = None
    ) -> None:
        """Fetch `request`'s commit into the mirror if it is not there yet (its checkout then
        finds it): `runner.executor.prefetch`. Only into a mirror that exists: making one is a
        build's or a registration's (and a removed repository's must stay removed)."""
        async with self._lock(request.repository):
            if _is_git_dir(self.mirror_path(request.repository)):
                await self._fetch(request, clone_url, token)

    async def clone(self, repository: str, clone_url: str, token: str | None) -> None:
        """Fill the repository's mirror with its branches and tags (a registration's clone)."""
        async with self._lock(repository):
            mirror = self.mirror_path(repository)
            await self._ensure_mirror(mirror, self._base_env)
            await self._fetch_remote(repository, mirror, clone_url, token, *_BRANCHES_AND_TAGS)

    async def branch_head(
        self, repository: str, branch: str, clone_url: str, token: str | None
    ) -> str | None:
        """The commit `branch` points to now, fetched into the mirror; None if there is none.

        A node that has no mirror yet (another node cloned the registration) makes one."""
        async with self._lock(repository):
            mirror = self.mirror_path(repository)
            await self._ensure_mirror(mirror, self._base_env)
            ref = f"refs/heads/{branch}"
            with contextlib.suppress(CheckoutError):
                await self._fetch_remote(repository, mirror, clone_url, token, f"+{ref}:{ref}")
            try:
                out = await self._git(
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    f"{ref}^{{commit}}",
                    git_dir=mirror,
                    env=self._base_env,
                )
            except CheckoutError:
                return None
            return out.strip() or None

    async def is_ancestor(self, repository: str, sha: str, head: str) -> bool:
        """Whether commit `sha` is `head` or comes before it (both in the mirror)."""
        mirror = self.mirror_path(repository)
        try:
            await self._git(
                "merge-base", "--is-ancestor", sha, head, git_dir=mirror, env=self._base_env
            )
        except CheckoutError:  # not an ancestor, or not in the mirror at all
            return False
        return True

    async def remove(self, repository: str) -> None:
        """Delete the repository's mirror and workspace (its registration is gone)."""
        async with self._lock(repository):
            for path in (self.mirror_path(repository), self.workspace_path(repository)):
                await asyncio.to_thread(remove, path)

    def _lock(self, repository: str) -> asyncio.Lock:
        return self._locks.setdefault(repository.lower(), asyncio.Lock())

    async def commit_info(self, repository: str, sha: str) -> tuple[str, str]:
        """(message, author name) of a commit already in the mirror."""
        out = await self._git(
            "log",
            "-1",
            "--format=%an%x00%B",
            sha,
            git_dir=self.mirror_path(repository),
            env=self._base_env,
        )
        author, _, message = out.partition("\0")
        return message.strip(), author

    async def _fetch(self, request: BuildRequest, clone_url: str, token: str | None) -> Path:
        repository = request.repository
        mirror = self.mirror_path(repository)
        made = await self._ensure_mirror(mirror, self._base_env)
        # A tag build fetches anyway: the tag itself may be new.
        tag = request.ref.startswith("refs/tags/")
        if not made and not tag:
            if await self._has_commit(mirror, request.sha, request.ref):
                return mirror
            if await self._fetch_over_wire(request, mirror, clone_url, token):
                return mirror
        refspecs = list(_BRANCHES_AND_TAGS)
        if request.pull_request is not None:
            refspecs.append(f"+{request.ref}:{request.ref}")  # refs/pull/<int>/head, built by us
        await self._fetch_remote(repository, mirror, clone_url, token, *refspecs)
        if await self._has_commit(mirror, request.sha, request.ref):
            return mirror
        # Not on any branch any more (force-pushed away): ask for the commit itself.
        with contextlib.suppress(CheckoutError):
            await self._fetch_remote(repository, mirror, clone_url, token, request.sha)
        if not await self._has_commit(mirror, request.sha):
            raise CheckoutError(f"commit {short_sha(request.sha)} not found in the repository")
        return mirror

    async def _fetch_remote(
        self, repository: str, mirror: Path, clone_url: str, token: str | None, *refspecs: str
    ) -> None:
        """`git fetch` from the server into the mirror, with `token` (a registration's) or the
        identity's for the repository; an identity's token the server refuses is replaced once."""
        borrowed = None
        if token is None and clone_url.startswith(("https://", "http://")):
            try:
                token = borrowed = await self._identity.token_for(repository)
            except GitHubUnreachable as error:
                raise CheckoutError(f"no credential to fetch with: {error}") from None
        try:
            await self._git(
                *FETCH, "--", clone_url, *refspecs, git_dir=mirror, env=self._env(clone_url, token)
            )
        except CheckoutError as error:
            if borrowed is None or not refuses_credentials(str(error)):
                raise
            self._identity.token_refused(borrowed)
            try:
                fresh = await self._identity.token_for(repository)
            except GitHubUnreachable:
                raise error from None
            if fresh == borrowed:
                raise
            await self._git(
                *FETCH, "--", clone_url, *refspecs, git_dir=mirror, env=self._env(clone_url, fresh)
            )

    async def _fetch_over_wire(
        self, request: BuildRequest, mirror: Path, clone_url: str, token: str | None
    ) -> bool:
        """The pushed commit fetched by the daemon itself (`git_wire`), without `git fetch`'s
        processes; False when that cannot be done, and `git fetch` does it (an identity's token
        the server refused is replaced first, and git fetches with the new one)."""
        borrowed = None
        if token is None and clone_url.startswith(("https://", "http://")):
            try:
                token = borrowed = await self._identity.token_for(request.repository)
            except GitHubUnreachable:
                return False
        server = upload_pack_for(clone_url, self._base_env, self._http, token)
        if server is None:
            return False
        try:
            async with asyncio.timeout(WIRE_FETCH_LIMIT):
                env = self._env(clone_url, None)
                await fetch_commit(mirror, server, request.sha, request.ref, env)
        except (WireFetchFailed, OSError, aiohttp.ClientError, TimeoutError) as error:
            if isinstance(error, CredentialsRefused) and borrowed is not None:
                self._identity.token_refused(borrowed)
            log.info(
                "fetching over git's protocol failed; git fetch will",
                repository=request.repository,
                error=str(error) or type(error).__name__,
            )
            return False
        return True

    async def _has_commit(self, mirror: Path, sha: str, ref: str | None = None) -> bool:
        """Whether the mirror has commit `sha`, without a git process where the files say so:
        its `ref` (what the push updated) points at it (git moves a ref only once its objects
        are in), or the object store has it (`stored_object`). Otherwise git is asked."""

        def known() -> bool | None:
            if ref is not None and ref_points_at(mirror, ref, sha):
                return True
            return stored_object(mirror, sha)

        # Read here, not in a thread: a few small files, where a hop to a thread and back
        # cost a millisecond on the build's way to make (traced).
        if (answer := known()) is not None:
            return answer
        try:
            await self._git(
                "cat-file", "-e", f"{sha}^{{commit}}", git_dir=mirror, env=self._base_env
            )
        except CheckoutError:
            return False
        return True

    async def _ensure_mirror(self, mirror: Path, env: Mapping[str, str]) -> bool:
        """Make the bare mirror if there is none (True), all at once: it appears by a rename."""
        if _is_git_dir(mirror):
            return False
        # Nothing, or what an interrupted build left: `git init` stopped half way.
        await asyncio.shield(asyncio.to_thread(_remove_half_made, mirror))
        mirror.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(dir=mirror.parent, prefix=f".{mirror.name}.", suffix=".new")
        try:
            await self._git("init", "--bare", "--quiet", "--template=", staging, env=env)
            os.rename(staging, mirror)
        except OSError:
            if not _is_git_dir(mirror):
                raise
            return False  # the other daemon (blue/green) made it first
        finally:
            await asyncio.shield(asyncio.to_thread(remove, Path(staging)))
        return True

    async def _git(
        self,
        *args: str,
        env: Mapping[str, str],
        git_dir: Path | None = None,
        work_tree: Path | None = None,
    ) -> str:
        """`git ARGS` in the repository at `git_dir` (its only one: git looks nowhere else)."""
        where = [f"--git-dir={git_dir}"] if git_dir is not None else []
        where += [f"--work-tree={work_tree}"] if work_tree is not None else []
        process = await spawn(("git", *where, *args), env=env)
        try:
            out, err = await process.communicate()
        except BaseException:  # the build was stopped or timed out: git goes too
            process.kill()
            process.close_pipes()
            raise
        if process.returncode != 0:
            message = err.decode(errors="replace").strip()[-GIT_OUTPUT_LIMIT:]
            raise CheckoutError(f"git {args[0]}: {message}")
        return out.decode(errors="replace")


_BRANCHES_AND_TAGS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


FETCH = ("fetch", "--quiet", "--prune", "--no-write-fetch-head")


def _is_git_dir(path: Path) -> bool:
    """Whether `path` is a whole git directory (what `git init` makes), not a half-made one."""
    return (
        (path / "HEAD").is_file()
        and (path / "objects").is_dir()
        and (path / "refs").is_dir()
        and (path / "config").is_file()
    )


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _remove_half_made(mirror: Path) -> None:
    if mirror.exists() and not _is_git_dir(mirror):
        remove(mirror)
