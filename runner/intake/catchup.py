"""Catch up on deliveries GitHub could not make while Hobotnica was away.

GitHub does not retry a failed webhook delivery, but it keeps three days of them per hook and
redelivers one on request. For every repository whose hook id is known (recorded from
`X-GitHub-Hook-ID`), this lists the hook's recent deliveries and asks GitHub to redeliver those
that never succeeded and that the store has never seen. Redeliveries keep their GUID, so intake's
deduplication makes a redundant request harmless.
https://docs.github.com/en/rest/repos/webhooks#list-deliveries-for-a-repository-webhook

Installed as a GitHub App, the App's own webhook is listed the same way (`GET /app/hook/deliveries`
with the App's JWT): how far it was checked is kept in memory, so a daemon that starts looks back
the three days GitHub keeps.
https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
"""

import datetime
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
import gidgethub
import structlog
from gidgethub.aiohttp import GitHubAPI

from runner.core.github_identity import GitHubApp
from runner.core.settings import GitHubSettings
from runner.store import Store

log = structlog.get_logger(logger_name="hobotnica.catchup")

GITHUB_KEEPS_SECONDS = 3 * 24 * 3600
OVERLAP_SECONDS = 300  # deliveries may be listed a little after they happen
MAX_LISTED = 2000  # per hook and run: bounded work even for a busy repository
MAX_ASKS_PER_DELIVERY = 3


def missed_deliveries(listed: list[Mapping[str, Any]], known: set[str]) -> dict[str, int]:
    """GUIDs GitHub never delivered successfully and the store never saw → newest attempt id."""
    delivered = {d["guid"] for d in listed if 200 <= int(d.get("status_code") or 0) < 300}
    missed: dict[str, int] = {}
    for delivery in listed:  # newest first, as GitHub lists them
        guid = delivery["guid"]
        if guid not in delivered and guid not in known and guid not in missed:
            missed[guid] = int(delivery["id"])
    return missed


def token_client(http: aiohttp.ClientSession, settings: GitHubSettings) -> GitHubAPI | None:
    """GitHub's REST API with the daemon's token (the repositories' own hooks), if it has one."""
    if not settings.token:
        return None
    return GitHubAPI(http, "hobotnica", oauth_token=settings.token, base_url=settings.api_url)


class DeliveryCatchUp:
    """`github`: the daemon's token, for the repositories' own hooks; `app`: the App's hook."""

    def __init__(
        self, store: Store, github: GitHubAPI | None, app: GitHubApp | None = None
    ) -> None:
        self._store = store
        self._github = github
        self._app = app
        self._app_checked_until = 0.0
        self._asked: Counter[str] = Counter()
        self._forbidden: set[str] = set()

    async def run_once(self) -> int:
        """Check every known hook once; returns how many redeliveries were asked for.

        Not while the store cannot write: a redelivery would be refused again, and each
        delivery is asked for only a few times.
        """
        if not self._store.writable:
            return 0
        asked = 0
        if self._app is not None:
            started = time.time()
            try:
                asked += await self._catch_up(
                    self._app.api(),
                    "/app/hook/deliveries",
                    self._app_checked_until,
                    self._app.jwt(),
                )
                self._app_checked_until = started - OVERLAP_SECONDS
            except gidgethub.GitHubException as error:  # the repositories' hooks still go on
                log.warning("cannot list the App hook's deliveries", error=str(error)[:200])
        if self._github is None:
            return asked
        for hook in await self._store.hooks():
            if hook.repository in self._forbidden:
                continue
            started = time.time()
            base = f"/repos/{hook.repository}/hooks/{hook.hook_id}/deliveries"
            try:
                asked += await self._catch_up(self._github, base, hook.checked_until)
            except gidgethub.BadRequest as error:
                if error.status_code.value in (403, 404):
                    log.warning(
                        "cannot list this hook's deliveries: the token needs admin:repo_hook "
                        "(catch-up is off for this repository until restart)",
                        repository=hook.repository,
                    )
                    self._forbidden.add(hook.repository)
                    continue
                raise
            await self._store.set_hook_checked(hook.repository, started - OVERLAP_SECONDS)
        return asked

    async def _catch_up(
        self, github: GitHubAPI, base: str, checked_until: float, jwt: str | None = None
    ) -> int:
        since = max(checked_until, time.time() - GITHUB_KEEPS_SECONDS)
        listed: list[Mapping[str, Any]] = []
        async for delivery in github.getiter(f"{base}?per_page=100", jwt=jwt):
            if _timestamp(delivery.get("delivered_at")) < since or len(listed) >= MAX_LISTED:
                break
            listed.append(delivery)
        known = await self._store.known_deliveries({d["guid"] for d in listed})
        asked = 0
        for guid, attempt_id in missed_deliveries(listed, known).items():
            if self._asked[guid] >= MAX_ASKS_PER_DELIVERY:
                continue
            self._asked[guid] += 1
            await github.post(f"{base}/{attempt_id}/attempts", data={}, jwt=jwt)
            log.info("asked GitHub to redeliver a missed delivery", hook=base, delivery_id=guid)
            asked += 1
        return asked


def _timestamp(value: object) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
