"""`hobotnica check-config --online`: does GitHub accept the App's JWT?"""

import sys

import aiohttp

from runner.core.github_identity import GitHubApp, GitHubUnreachable
from runner.core.settings import Settings


async def check_app_online(settings: Settings) -> int:
    github = settings.github
    if github.app is None:
        print("  --online: no GitHub App configured (github.app_id); nothing to ask GitHub")
        return 0
    app_id, private_key = github.app
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app = GitHubApp(session, api_url=github.api_url, app_id=app_id, private_key=private_key)
        try:
            found = await app.check()
        except GitHubUnreachable as error:
            print(f"hobotnica: GitHub App check failed: {error}", file=sys.stderr)
            return 1
    name = found.get("slug") or found.get("name") or "?"
    owner = found.get("owner")
    login = owner.get("login", "?") if isinstance(owner, dict) else "?"
    print(f"  GitHub accepts the App's JWT: {name} (app {app_id}, owner {login})")
    return 0
