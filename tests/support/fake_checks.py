"""The fake GitHub's check runs, as GitHub answers them (https://docs.github.com/en/rest/checks/runs).

`FakeChecks`, mixed into `FakeGitHub`, serves under the API prefix `POST .../check-runs` (201),
`PATCH`/`GET .../check-runs/{id}`, `GET .../check-runs/{id}/annotations` and `GET
.../commits/{ref}/check-runs` (`ref`: the head SHA; `check_name`, `status`, `filter` = `latest`,
the newest run of each name, or `all`; `per_page`, `page`; in creation order). Only a GitHub App
writes: a POST or PATCH without an installation token of the fake's App gets 403 "You must
authenticate via a GitHub App."; a bad one is refused as the App's other endpoints do (401 for
expired or revoked, noted in `FakeApp.refused_tokens`). `checks: write` is not modelled.

Bodies are checked as GitHub describes them: a bad one gets 422 ("Invalid request.", reasons in
`errors`, also kept in `check_run_errors`); unknown keys are ignored; `conclusion: stale` is refused
(only GitHub sets it). A conclusion completes the run; annotations add up across updates. Accepted
runs are in `check_runs[id]`, with each body in `history` and each `Authorization` in
`authorizations`. `hold_answers("check-runs")` holds them once the credential passed.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from tests.support.fake_github_app import INSTALLATION_TOKEN, iso
from tests.support.fake_github_app_routes import DOCS, answer, bearer, paginated, refuse_token

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

KIND = "check-runs"
STATUSES = ("queued", "in_progress", "completed")
ACTIONS_ONLY = ("waiting", "requested", "pending")  # statuses only GitHub Actions may set
CONCLUSIONS: tuple[str, ...] = ("action_required", "cancelled", "failure", "neutral", "success")
CONCLUSIONS += ("skipped", "timed_out")  # and "stale", which only GitHub sets
LEVELS = ("notice", "warning", "failure")
HEAD_SHA = re.compile(r"[0-9a-fA-F]{40}")
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
TEXT_MOST = 65535  # characters of output.summary and output.text
KB64 = 64 * 1024  # bytes of an annotation's message and raw_details
HOMEPAGE = "https://hobotnica.test"  # the App's external_url: the default details_url
NOT_APP = "You must authenticate via a GitHub App."
SHOWN = "id head_sha node_id external_id url html_url details_url status conclusion started_at"
SHOWN += " completed_at output name check_suite app pull_requests"


def _string(value: Any, name: str, most: int | None = None, size: int | None = None) -> list[str]:
    if not isinstance(value, str):
        return [f"{name} is not a string: {json.dumps(value)[:80]}"]
    if most is not None and len(value) > most:
        return [f"{name} is longer than {most} characters ({len(value)})"]
    if size is not None and len(value.encode()) > size:
        return [f"{name} is larger than {size} bytes ({len(value.encode())})"]
    return []


def _missing(value: dict[str, Any], keys: tuple[str, ...], where: str) -> list[str]:
    return [f"{where}{key} wasn't supplied" for key in keys if key not in value]


def _is_time(value: Any) -> bool:
    """An ISO 8601 date-time with its offset, as GitHub's `format: date-time` wants."""
    if not isinstance(value, str) or not DATE_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _annotation_problems(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is not an object"]
    keys = ("path", "start_line", "end_line", "annotation_level", "message")
    found = _missing(value, keys, where + ".")
    for key in ("path", "message", "title", "raw_details"):
        if key in value:
            most = 255 if key == "title" else None
            size = KB64 if key in ("message", "raw_details") else None
            found += _string(value[key], f"{where}.{key}", most, size)
    for key in ("start_line", "end_line", "start_column", "end_column"):
        number = value.get(key, 1)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            found.append(f"{where}.{key} is not a whole number from 1: {json.dumps(number)}")
    columns = "start_column" in value or "end_column" in value
    if columns and value.get("start_line") != value.get("end_line"):
        found.append(f"{where} has columns but start_line and end_line differ")
    if "annotation_level" in value and value["annotation_level"] not in LEVELS:
        found.append(f"{where}.annotation_level is not one of {LEVELS}")
    return found


def _output_problems(output: Any) -> list[str]:
    if not isinstance(output, dict):
        return ["output is not an object"]
    found = _missing(output, ("title", "summary"), "output.")
    for key in ("title", "summary", "text"):
        if key in output:
            found += _string(output[key], f"output.{key}", None if key == "title" else TEXT_MOST)
    annotations = output.get("annotations", [])
    if not isinstance(annotations, list):
        return [*found, "output.annotations is not an array"]
    if len(annotations) > 50:
        found.append(f"output.annotations has {len(annotations)} items, at most 50 per request")
    for n, annotation in enumerate(annotations):
        found += _annotation_problems(annotation, f"output.annotations[{n}]")
    images = output.get("images", [])
    if not isinstance(images, list):
        return [*found, "output.images is not an array"]
    for n, image in enumerate(images):
        where = f"output.images[{n}]"
        if not isinstance(image, dict):
            found.append(f"{where} is not an object")
            continue
        found += _missing(image, ("alt", "image_url"), where + ".")
        for key in ("alt", "image_url", "caption"):
            found += _string(image[key], f"{where}.{key}") if key in image else []
    return found


def _actions_problems(actions: Any) -> list[str]:
    if not isinstance(actions, list):
        return ["actions is not an array"]
    found = [f"actions has {len(actions)} items, at most 3"] if len(actions) > 3 else []
    for n, action in enumerate(actions):
        where = f"actions[{n}]"
        if not isinstance(action, dict):
            found.append(f"{where} is not an object")
            continue
        for key, most in (("label", 20), ("description", 40), ("identifier", 20)):
            present = key in action
            found += _string(action[key], f"{where}.{key}", most) if present else []
            found += [] if present else [f"{where}.{key} wasn't supplied"]
    return found


def body_problems(body: Any, creating: bool) -> list[str]:
    """Why GitHub would refuse `body` for a create (or an update): [] when it would not."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    found = _missing(body, ("name", "head_sha"), "") if creating else []
    for key in ("name", "external_id", "details_url"):
        found += _string(body[key], key) if key in body else []
    sha = body.get("head_sha", "0" * 40)
    if creating and not (isinstance(sha, str) and HEAD_SHA.fullmatch(sha)):
        found.append(f"head_sha is not a commit SHA (40 hex digits): {json.dumps(sha)[:80]}")
    status = body.get("status", "queued")
    if status in ACTIONS_ONLY:
        found.append(f"status {status!r} can only be set by GitHub Actions")
    elif status not in STATUSES:
        found.append(f"status {json.dumps(status)[:40]} is not one of {STATUSES}")
    if "conclusion" in body:
        conclusion = body["conclusion"]
        if conclusion == "stale":
            found.append("conclusion 'stale' can only be set by GitHub")
        elif conclusion not in CONCLUSIONS:
            found.append(f"conclusion {json.dumps(conclusion)[:40]} is not one of {CONCLUSIONS}")
    elif status == "completed" or "completed_at" in body:
        found.append("conclusion is required with status 'completed' or a completed_at")
    for key in ("started_at", "completed_at"):
        if key in body and not _is_time(body[key]):
            found.append(f"{key} is not an ISO 8601 date-time: {json.dumps(body[key])[:40]}")
    found += _output_problems(body["output"]) if "output" in body else []
    found += _actions_problems(body["actions"]) if "actions" in body else []
    return found


@dataclass
class FakeCheckRun:
    """A check run as GitHub shows it, and what the fake saw of it."""

    id: int
    repository: str  # owner/name as the creating request spelled it
    head_sha: str
    name: str
    node_id: str
    url: str
    html_url: str
    details_url: str
    external_id: str
    started_at: str
    check_suite: dict[str, int]
    app: dict[str, Any] | None
    status: str = "queued"
    conclusion: str | None = None
    completed_at: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    pull_requests: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.output = {"title": None, "summary": None, "text": None, "annotations_count": 0}
        self.output["annotations_url"] = self.url + "/annotations"

    def json(self) -> dict[str, Any]:
        shown = {key: getattr(self, key) for key in SHOWN.split()}
        return shown | {"output": dict(self.output), "pull_requests": list(self.pull_requests)}

    def apply(self, body: dict[str, Any], now: str, authorization: str) -> None:
        """Take a valid create or update `body` as GitHub does."""
        self.history.append(body)
        self.authorizations.append(authorization)
        for key in ("name", "external_id", "details_url", "started_at", "status"):
            if key in body:
                setattr(self, key, body[key])
        if "conclusion" in body:
            self.status, self.conclusion = "completed", body["conclusion"]
        if self.status != "completed":
            self.conclusion = self.completed_at = None
        elif "completed_at" in body or self.completed_at is None:
            self.completed_at = body.get("completed_at", now)
        if "output" in body:
            output = body["output"]
            self.output |= {"title": output["title"], "summary": output["summary"]}
            self.output["text"] = output.get("text", self.output["text"])
            self.annotations += output.get("annotations", [])
            self.output["annotations_count"] = len(self.annotations)
        self.actions = list(body.get("actions", self.actions))

    def annotation_json(self, annotation: dict[str, Any], site: str) -> dict[str, Any]:
        keys = "path start_line end_line start_column end_column annotation_level title message"
        keys += " raw_details"
        blob = f"{site}/{self.repository}/blob/{self.head_sha}/{annotation['path']}"
        return {key: annotation.get(key) for key in keys.split()} | {"blob_href": blob}


@dataclass(kw_only=True)
class FakeChecks:
    """Mixed into FakeGitHub: the check runs it keeps, and why it refused bodies."""

    check_runs: dict[int, FakeCheckRun] = field(default_factory=dict)
    check_run_errors: list[str] = field(default_factory=list)
    _check_suites: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def checks(self, prefix: str) -> list[web.RouteDef]:
        """The routes of the Checks API under `prefix`."""
        return CheckRunEndpoints(cast("FakeGitHub", self), prefix).routes()

    def check_runs_for(self, sha: str, name: str | None = None) -> list[FakeCheckRun]:
        """The runs for commit `sha` (and named `name`), in creation order."""
        return [
            run
            for run in self.check_runs.values()
            if run.head_sha == sha and (name is None or run.name == name)
        ]

    async def wait_check_completed(
        self, sha: str, name: str = "hobotnica/test", timeout: float = 60.0
    ) -> FakeCheckRun:
        """The first run for `sha` named `name` to be completed, once one is."""

        def completed() -> list[FakeCheckRun]:
            return [run for run in self.check_runs_for(sha, name) if run.status == "completed"]

        changed = cast("FakeGitHub", self)._changed
        try:
            async with asyncio.timeout(timeout), changed:
                await changed.wait_for(lambda: bool(completed()))
        except TimeoutError:
            seen = [(r.id, r.name, r.status, r.conclusion) for r in self.check_runs_for(sha)]
            raise AssertionError(
                f"no completed {name} check run for {sha[:7]} in {timeout} s; runs for the"
                f" commit (id, name, status, conclusion): {seen}; refused bodies:"
                f" {self.check_run_errors}"
            ) from None
        return completed()[0]

    def _check_suite(self, repository: str, sha: str) -> int:
        """GitHub makes one check suite per commit and App."""
        return self._check_suites.setdefault((repository.lower(), sha), len(self._check_suites) + 1)


class CheckRunEndpoints:
    """The check-run endpoints of `fake`, under `prefix`."""

    def __init__(self, fake: FakeGitHub, prefix: str) -> None:
        self.fake = fake
        self.prefix = prefix

    def routes(self) -> list[web.RouteDef]:
        repo = self.prefix + "/repos/{owner}/{repo}"
        run = repo + r"/check-runs/{check_run_id:\d+}"
        return [
            web.post(repo + "/check-runs", self._write),
            web.patch(run, self._write),
            web.get(run, self._get, allow_head=False),
            web.get(run + "/annotations", self._annotations, allow_head=False),
            web.get(repo + "/commits/{ref}/check-runs", self._list, allow_head=False),
        ]

    def _invalid(self, problems: list[str], status: int = 422) -> web.Response:
        self.fake.check_run_errors.extend(problems)
        message = "Invalid request." if status == 422 else "Problems parsing JSON"
        body = {"message": message, "errors": problems, "documentation_url": DOCS}
        return web.json_response(body, status=status)

    async def _write(self, request: web.Request) -> web.Response:
        creating = request.method == "POST"
        app = self.fake.app_auth
        if (refusal := refuse_token(app, request)) is not None:
            return refusal
        token = bearer(request)
        if app is None or token is None or not INSTALLATION_TOKEN.fullmatch(token):
            return answer(403, NOT_APP)
        await self.fake._held_back(KIND)
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        found = None if creating else self._run(request)
        if not creating and found is None:
            return answer(404, "Not Found")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._invalid(["the body is not JSON"], 400)
        if problems := body_problems(body, creating):
            return self._invalid(problems)
        now, site = iso(app.now()), str(request.url.origin())
        async with self.fake._changed:
            number = len(self.fake.check_runs) + 1
            found = found or FakeCheckRun(
                id=number,
                repository=repository,
                head_sha=body["head_sha"],
                name=body["name"],
                node_id=f"CR_{number}",
                url=f"{site}{self.prefix}/repos/{repository}/check-runs/{number}",
                html_url=f"{site}/{repository}/runs/{number}",
                details_url=HOMEPAGE,
                external_id="",
                started_at=now,
                check_suite={"id": self.fake._check_suite(repository, body["head_sha"])},
                app=app.app_json(site),
            )
            found.apply(body, now, request.headers.get("Authorization", ""))
            self.fake.check_runs[found.id] = found
            self.fake._changed.notify_all()
        return web.json_response(found.json(), status=201 if creating else 200)

    def _run(self, request: web.Request) -> FakeCheckRun | None:
        """The run of the path, if it is the path's repository's."""
        found = self.fake.check_runs.get(int(request.match_info["check_run_id"]))
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}"
        return found if found and found.repository.lower() == repository.lower() else None

    async def _read(self, request: web.Request) -> web.Response | None:
        """The refusal of a bad installation token, after any hold; None to go on."""
        if (refusal := refuse_token(self.fake.app_auth, request)) is not None:
            return refusal
        await self.fake._held_back(KIND)
        return None

    async def _get(self, request: web.Request) -> web.Response:
        if (refusal := await self._read(request)) is not None:
            return refusal
        found = self._run(request)
        return answer(404, "Not Found") if found is None else web.json_response(found.json())

    async def _annotations(self, request: web.Request) -> web.Response:
        if (refusal := await self._read(request)) is not None:
            return refusal
        found = self._run(request)
        if found is None:
            return answer(404, "Not Found")
        listed = [found.annotation_json(a, str(request.url.origin())) for a in found.annotations]
        page, headers = paginated(request, listed)
        return web.json_response(page, headers=headers)

    async def _list(self, request: web.Request) -> web.Response:
        if (refusal := await self._read(request)) is not None:
            return refusal
        repository = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        query = request.query
        runs = [
            run
            for run in self.fake.check_runs.values()
            if run.repository.lower() == repository
            and run.head_sha == request.match_info["ref"]
            and run.name == query.get("check_name", run.name)
        ]
        which = query.get("filter", "latest")
        if which not in ("latest", "all"):
            return self._invalid([f"filter {which!r} is not one of ('latest', 'all')"])
        if which == "latest":
            newest = {run.name: run for run in runs}  # creation order: the last one stays
            runs = sorted(newest.values(), key=lambda run: run.id)
        runs = [run for run in runs if run.status == query.get("status", run.status)]
        page, headers = paginated(request, [run.json() for run in runs])
        return web.json_response({"total_count": len(runs), "check_runs": page}, headers=headers)
