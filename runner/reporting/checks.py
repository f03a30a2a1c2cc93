"""Posts a build's states as a check run (`[github] report = "checks"`), with the App's token.

The outbox gives the same guarantees as for statuses (paced, retried, newest first, durable); this
turns one outbox item into Checks API requests: the first state of a build and context creates its
check run (`POST /repos/{owner}/{repo}/check-runs`, `external_id` = the build id), later ones
update it (`PATCH .../check-runs/{id}`). The id is remembered in memory; a daemon that does not
know it (restarted, or another node posted the first state) finds it by `external_id` among the
commit's runs of that name, so a run is never left `in_progress` for want of its id — asked
before a build's first post too, so a state posted again (a recovered build's "Queued", a retry
after GitHub's answer was lost) never makes a second run. A final
state with more than 50 annotations sends the rest in further updates, 50 at a time.
"""

import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import gidgethub
import structlog
from cachetools import LRUCache
from gidgethub.aiohttp import GitHubAPI

from runner.core.checks import BuildFacts, annotation_batches, annotations, check_run_update
from runner.core.github_identity import GitHubApp, GitHubUnreachable
from runner.core.links import build_url
from runner.reporting.outcomes import Outcome, post_as, status_of
from runner.store import OutboxItem

log = structlog.get_logger(logger_name="hobotnica.checks")

# (the build's facts, the workspace path its compiler lines name), read when a build is final.
FactsReader = Callable[[OutboxItem], Awaitable[tuple[BuildFacts, str] | None]]


class CheckRuns:
    def __init__(
        self,
        app: GitHubApp,
        *,
        public_url: str,
        facts: FactsReader,
    ) -> None:
        self._app = app
        self._public_url = public_url
        self._facts = facts
        self._ids: LRUCache[tuple[int, str], int] = LRUCache(maxsize=10_000)

    async def covers(self, repository: str) -> bool:
        """Whether the App is installed on the repository (else its statuses are posted)."""
        try:
            return await self._app.installation_of(repository) is not None
        except GitHubUnreachable:
            return True  # ask again when posting; the outbox retries

    async def post(self, item: OutboxItem) -> Outcome:
        body = await self._body(item)

        async def send(token: str) -> Exception | None:
            failure = await self._send(token, item, body)
            if status_of(failure) == 422 and body.get("status") == "completed":
                # GitHub refused the output (a limit the rules missed): the result matters more.
                log.warning("GitHub refused a check run's output; sending the result alone")
                output = body["output"]
                brief = {**body, "output": {"title": output["title"], "summary": output["summary"]}}
                failure = await self._send(token, item, brief)
            return failure

        return await post_as(self._app, item.repository, item.sha, send, log)

    async def _body(self, item: OutboxItem) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        final = item.status.payload(context="", target_url="")["state"] != "pending"
        read = await self._facts(item) if final else None
        facts, workspace = read if read is not None else (None, "")
        body = check_run_update(item.status, facts, now_iso=now.replace("+00:00", "Z"))
        if facts is not None and "output" in body:
            body["output"]["annotations"] = annotations(facts.log_tail, workspace)
        return body

    async def _send(self, token: str, item: OutboxItem, body: dict[str, Any]) -> Exception | None:
        github = self._app.api(token)
        base = f"/repos/{item.repository}/check-runs"
        body = {**body, "output": dict(body["output"])} if "output" in body else dict(body)
        annotations_left = body.get("output", {}).pop("annotations", [])
        batches = annotation_batches(annotations_left) or [[]]
        try:
            run_id = await self._run_id(github, item)
            first = dict(body)
            if batches[0]:
                first["output"] = {**body["output"], "annotations": batches[0]}
            if run_id is None:
                created = await github.post(
                    base,
                    data={
                        "name": item.context,
                        "head_sha": item.sha,
                        "external_id": str(item.build_id),
                        "details_url": build_url(self._public_url, item.build_id),
                        **first,
                    },
                )
                self._ids[(item.build_id, item.context)] = int(created["id"])
                run_id = int(created["id"])
            else:
                await github.patch(f"{base}/{run_id}", data=first)
            for batch in batches[1:]:
                output = {**body["output"], "annotations": batch}
                await github.patch(f"{base}/{run_id}", data={"output": output})
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError, ValueError) as error:
            return error
        return None

    async def _run_id(self, github: GitHubAPI, item: OutboxItem) -> int | None:
        """The build's check run for this context, if one was made (by any daemon)."""
        known = self._ids.get((item.build_id, item.context))
        if known is not None:
            return known
        path = (
            f"/repos/{item.repository}/commits/{item.sha}/check-runs"
            f"?check_name={item.context}&filter=all&per_page=100"
        )
        started = time.monotonic()
        async for run in github.getiter(path, iterable_key="check_runs"):
            if str(run.get("external_id")) == str(item.build_id):
                self._ids[(item.build_id, item.context)] = int(run["id"])
                return int(run["id"])
            if time.monotonic() - started > 30:
                break
        return None
