"""Git over smart HTTP for the fake GitHub: a real `git http-backend` behind its aiohttp server.

`GET /{owner}/{name}.git/info/refs` and `POST /{owner}/{name}.git/git-upload-pack` run the CGI
program (https://git-scm.com/docs/git-http-backend) on the bare remotes under
`FakeGitHub.git_root` (`{root}/{owner}/{name}.git`, as tests/support/gitrepo.py makes them), so a
daemon clones and fetches as it would from GitHub. Read-only: receive-pack is a 403.

Credentials are checked as GitHub checks them: with `FakeGitHub.git_token` set (token mode),
`Authorization: Basic base64(user:that token)`; else with an App enabled,
`Basic base64("x-access-token:" + installation token)` for a token good for the repository.
A missing or bad credential is a 401 with `WWW-Authenticate: Basic realm="GitHub"` (git asks
for credentials, and with `GIT_TERMINAL_PROMPT=0` gives up); a good installation token for
another repository, a 404 as GitHub's "Repository not found". With neither set, anyone may
read. The token of every Authorization header lands in `git_authorizations`, and each refusal
as (path, reason) in `git_refused`.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from tests.support.fake_github_app_routes import basic

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

GIT_HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Like GitHub, serve any commit asked for by its sha if a ref reaches it (`git fetch origin SHA`).
BACKEND_CONFIG = {"uploadpack.allowReachableSHA1InWant": "true"}


class GitOverHTTP:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    def routes(self) -> list[web.RouteDef]:
        repository = "/{owner}/{repo}.git"
        return [
            web.get(repository + "/info/refs", self.serve, allow_head=False),
            web.post(repository + "/git-upload-pack", self.serve),
            web.post(repository + "/git-receive-pack", self.serve),
        ]

    async def serve(self, request: web.Request) -> web.StreamResponse:
        owner, name = request.match_info["owner"], request.match_info["repo"]
        refusal = self._refusal(request, f"{owner}/{name}")
        pushing = request.query.get("service") == "git-receive-pack"
        if refusal is None and (pushing or request.path.endswith("/git-receive-pack")):
            refusal = 403, "receive-pack is not served"
        if refusal is None and not (NAME.fullmatch(owner) and NAME.fullmatch(name)):
            refusal = 404, "not a repository name"
        root = self.fake.git_root
        if refusal is None and (root is None or not (root / owner / f"{name}.git").is_dir()):
            refusal = 404, f"no repository {owner}/{name} under git_root {root}"
        if refusal is not None:
            status, reason = refusal
            self.fake.git_refused.append((request.path, reason))
            if status == 401:
                challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
                return web.Response(status=401, text=reason, headers=challenge)
            return web.Response(
                status=status, text="Repository not found." if status == 404 else reason
            )
        assert root is not None
        return await self._backend(request, root)

    def _refusal(self, request: web.Request, repository: str) -> tuple[int, str] | None:
        credentials = basic(request)
        if "Authorization" in request.headers:
            self.fake.git_authorizations.append(
                credentials[1] if credentials else request.headers["Authorization"]
            )
        wanted, app = self.fake.git_token, self.fake.app_auth
        if wanted is None and app is None:
            return None
        if credentials is None:
            return 401, "no Basic credentials"
        user, token = credentials
        if wanted is not None:
            return None if token == wanted else (401, "not the git token")
        assert app is not None
        if user != "x-access-token":
            return 401, f"user {user!r} is not x-access-token"
        return app.refusal(token, repository)

    async def _backend(self, request: web.Request, root: Path) -> web.Response:
        """Run the CGI program for `request`, and answer with what it printed."""
        # git gzips large POSTs (`Content-Encoding: gzip`). aiohttp's server decompresses request
        # bodies itself (`auto_decompress`); should it not, do it here: the backend needs them
        # plain, and a plain pkt-line body never starts with gzip's magic bytes.
        body = await request.read()
        if (
            request.headers.get("Content-Encoding", "").lower() == "gzip"
            and body[:2] == b"\x1f\x8b"
        ):
            body = gzip.decompress(body)
        environment = {
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": request.path,
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": request.remote or "127.0.0.1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_COUNT": str(len(BACKEND_CONFIG)),
        }
        for n, (key, value) in enumerate(BACKEND_CONFIG.items()):
            environment |= {f"GIT_CONFIG_KEY_{n}": key, f"GIT_CONFIG_VALUE_{n}": value}
        if "Git-Protocol" in request.headers:
            environment["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        process = await asyncio.create_subprocess_exec(
            str(GIT_HTTP_BACKEND),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        out, err = await process.communicate(body)
        end_of_headers = re.search(rb"\r?\n\r?\n", out)
        if end_of_headers is None:
            return web.Response(status=500, text=f"git http-backend failed: {err.decode()}")
        status, headers = 200, {}
        for line in out[: end_of_headers.start()].decode().splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers[key.strip()] = value.strip()
        return web.Response(status=status, body=out[end_of_headers.end() :], headers=headers)


def git_routes(fake: FakeGitHub) -> list[web.RouteDef]:
    return GitOverHTTP(fake).routes()
