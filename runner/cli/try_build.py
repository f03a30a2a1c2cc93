"""`hobotnica try PATH`: see a build without GitHub.

Pushes the local repository's HEAD into a bare repository under `{data_dir}/local/` (which the
daemon builds as `local/NAME`, see `runner.store.projects`), then sends the running daemon a push
webhook shaped like GitHub's, signed with the configured secret, and prints the build page URL.
This is a plain synchronous command-line client; it talks to the daemon over loopback HTTP.

The branch tried is the local repository's default branch, as GitHub's default branch is the
one its repository's HEAD names: the bare repository's HEAD is pointed at it (the pages read it
from there). The push names it as the repository's default branch only with `--deploy`, since a
push to the default branch deploys: without it the push only tests, on any daemon version.
"""

import asyncio
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from runner.core.models import Build, BuildState, Job
from runner.core.names import is_branch_name
from runner.core.settings import Settings
from runner.store import Store, open_store
from runner.store.projects import LOCAL_OWNER, ProjectDirectory

POLL_SECONDS = 0.5


def try_build(settings: Settings, path: Path, *, deploy: bool, wait: bool) -> int:
    try:
        top = Path(_git(path, "rev-parse", "--show-toplevel"))
        sha = _git(top, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        print(f"hobotnica try: {path} is not a git repository with a commit", file=sys.stderr)
        return 1
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", top.name).strip("-.") or "repository"
    branch = _git(top, "rev-parse", "--abbrev-ref", "HEAD")
    if not is_branch_name(branch) or branch == "HEAD":
        branch = "try"
    author, email, message = _git(top, "log", "-1", "--format=%an%x00%ae%x00%B").split("\0", 2)

    bare = ProjectDirectory(settings).local_path(name)
    if not (bare / "HEAD").exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git(top, "init", "--quiet", "--bare", str(bare))
    _git(top, "push", "--quiet", "--force", str(bare), f"HEAD:refs/heads/{branch}")
    _git(bare, "symbolic-ref", "HEAD", f"refs/heads/{branch}")  # its default branch

    repository = f"{LOCAL_OWNER}/{name}"
    payload = _push_payload(repository, name, branch, sha, author, email, message, deploy)
    answer = _post_webhook(settings, payload)
    if answer is None:
        return 1
    build_ids = answer.get("builds", [])
    if not build_ids:
        print(f"hobotnica try: nothing was built: {answer.get('ignored', answer)}")
        return 1
    for build_id in build_ids:
        print(f"{settings.server.public_url}/builds/{build_id}")
    if wait:
        return _wait_for(settings, build_ids[0], deploy=deploy)
    return 0


def _push_payload(
    repository: str,
    name: str,
    branch: str,
    sha: str,
    author: str,
    email: str,
    message: str,
    deploy: bool,
) -> dict[str, Any]:
    """A push event with the fields GitHub sends and Hobotnica reads."""
    person = {"name": author, "email": email, "username": author}
    commit = {
        "id": sha,
        "tree_id": sha,
        "distinct": True,
        "message": message.strip(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "url": "",
        "author": person,
        "committer": person,
        "added": [],
        "removed": [],
        "modified": [],
    }
    return {
        "ref": f"refs/heads/{branch}",
        "before": "0" * 40,
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": True,
        "base_ref": None,
        "compare": "",
        "commits": [commit],
        "head_commit": commit,
        "repository": {
            "name": name,
            "full_name": repository,
            "private": True,
            "owner": {"login": LOCAL_OWNER, "name": LOCAL_OWNER},
            # A push to the default branch deploys; `try` deploys only when asked to.
            "default_branch": branch if deploy else None,
            "pushed_at": int(time.time()),
        },
        "pusher": {"name": author, "email": email},
        "sender": {"login": author},
    }


def _post_webhook(settings: Settings, payload: dict[str, Any]) -> dict[str, Any] | None:
    body = json.dumps(payload).encode()
    secret = settings.github.webhook_secret.encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reaching a wildcard listener via loopback
        host = "127.0.0.1"
    url = f"http://{host}:{settings.server.port}/webhooks/github"
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/hobotnica-try",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            answer: dict[str, Any] = json.load(response)
            return answer
    except urllib.error.HTTPError as error:
        print(
            f"hobotnica try: the daemon answered {error.code}: {error.read()[:300]!r}",
            file=sys.stderr,
        )
    except OSError as error:
        print(
            f"hobotnica try: cannot reach the daemon at {url} ({error}); is `make run` running?",
            file=sys.stderr,
        )
    return None


def _wait_for(settings: Settings, build_id: int, *, deploy: bool) -> int:
    """Watch the build in the daemon's store (this command shares its data directory), so it
    needs no sign-in for the daemon's pages; with `deploy`, then the deploy its success queued."""
    return asyncio.run(_watch(settings, build_id, deploy=deploy))


async def _watch(settings: Settings, build_id: int, *, deploy: bool) -> int:
    store = await open_store(settings)
    try:
        test = await _final(store, build_id)
        print(f"{test.state.value}: {test.description}", flush=True)
        if test.state is not BuildState.SUCCESS:
            return 2
        if not deploy:
            return 0
        newer = await store.list_builds(test.repository, limit=20)
        queued = [
            b for b in newer if b.id > test.id and b.job is Job.DEPLOY and b.request.sha == test.sha
        ]
        if not queued:
            print("no deploy was queued (deploys follow green tests of the default branch)")
            return 2
        deployed = min(queued, key=lambda b: b.id)
        print(f"{settings.server.public_url}/builds/{deployed.id}", flush=True)
        deployed = await _final(store, deployed.id)
        print(f"{deployed.state.value}: {deployed.description}")
        return 0 if deployed.state is BuildState.SUCCESS else 2
    finally:
        await store.close()


async def _final(store: Store, build_id: int) -> Build:
    while True:
        build = await store.get_build(build_id)
        if build is not None and build.state.is_final:
            return build
        await asyncio.sleep(POLL_SECONDS)


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    )
    return result.stdout.strip()
