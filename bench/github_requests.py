"""GitHub requests per push, token mode against GitHub App mode (issue 17's figure).

Runs the daemon in this process against the tests' fake GitHub on loopback (its App checks
JWTs and issues installation tokens; repositories are served over smart HTTP by a real
`git http-backend`, so every clone and fetch authenticates), pushes PUSHES new commits one at a
time, and counts what the daemon asked of GitHub: REST requests by endpoint, and git's HTTP
requests. Run: `.venv/bin/python bench/github_requests.py`.
"""

import asyncio
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.app import create_app  # noqa: E402
from runner.core.settings import parse_settings  # noqa: E402
from tests.support.fake_github import FakeGitHub  # noqa: E402
from tests.support.gitrepo import make_remote, makefile  # noqa: E402
from tests.support.webhooks import headers, push_payload  # noqa: E402

PUSHES = 10
SECRET = "github-requests-bench-secret-0123"
TOKEN = "ghp_benchtoken0123456789abcdef"


async def run(mode: str, work: Path) -> dict[str, Any]:
    fake = FakeGitHub()
    remote_root = work / "remotes"
    remote = make_remote(remote_root, "octo/app")
    fake.git_root = remote_root
    github: dict[str, Any] = {"webhook_secret": SECRET, "catch_up": False}
    if mode == "app":
        app = fake.enable_app()
        app.install(1, "octo", ["octo/app"])
        key = work / "app.pem"
        key.write_text(app.private_key_pem)
        key.chmod(0o600)
        github.update(app_id=app.app_id, private_key_file=str(key))
    else:
        fake.git_token = TOKEN
        github["token"] = TOKEN
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    github.update(api_url=fake.url, git_url=fake.url)
    raw = {
        "server": {"public_url": "http://127.0.0.1:8081"},
        "github": github,
        "storage": {"data_dir": str(work / "var"), "min_free": 0},
        "ui": {"public": True},
        "projects": [{"repository": "octo/app"}],
    }
    settings = parse_settings(raw, {}, base_dir=work)
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        for number in range(PUSHES):
            sha = remote.commit({"Makefile": makefile(test="@true"), "n": str(number)})
            payload = push_payload("octo/app", sha)
            if mode == "app":
                payload["installation"] = {"id": 1}
            body = json.dumps(payload).encode()
            hdrs = headers(body, SECRET, "push")
            if mode == "app":
                hdrs["X-GitHub-Hook-Installation-Target-Type"] = "integration"
            answer = await client.post("/webhooks/github", data=body, headers=hdrs)
            assert answer.status == 202, await answer.text()
            await fake.wait_final(sha)
    finally:
        await client.close()
        await server.close()
    rest = [(m, p) for m, p, _auth in fake.requests if ".git/" not in p]
    kinds = collections.Counter(f"{method} {_shape(path)}" for method, path in rest)
    return {
        "rest": dict(kinds),
        "rest_per_push": len(rest) / PUSHES,
        "git_http_per_push": len(fake.git_authorizations) / PUSHES,
        "git_refused": len(fake.git_refused),
    }


def _shape(path: str) -> str:
    parts = path.split("/")
    return "/".join("{sha}" if len(p) == 40 else "{id}" if p.isdigit() else p for p in parts)


async def main() -> None:
    results = {}
    for mode in ("token", "app"):
        with tempfile.TemporaryDirectory(prefix=f"hobotnica-requests-{mode}-") as work:
            results[mode] = await run(mode, Path(work))
    for mode, found in results.items():
        print(
            f"{mode}: {found['rest_per_push']:.1f} REST requests per push, "
            f"{found['git_http_per_push']:.1f} git HTTP requests per push"
        )
        for kind, count in sorted(found["rest"].items()):
            print(f"  {count:4d}  {kind}")


if __name__ == "__main__":
    asyncio.run(main())
