"""The fake GitHub's check runs: what it takes and refuses, so tests of check runs can trust it.

Only the fake App's installation tokens write; bodies are checked as GitHub describes them
(https://docs.github.com/en/rest/checks/runs) and every refusal is kept in `check_run_errors`;
annotations add up; `filter=latest` keeps the newest run of each name; the Enterprise prefix
serves the same; and answers can be held.
"""

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gidgethub.apps import get_jwt

from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_app import FakeApp

SHA = "a" * 40
OTHER_SHA = "b" * 40
RUNS = "/repos/octo/app/check-runs"
NOTE = {
    "path": "Makefile",
    "start_line": 3,
    "end_line": 3,
    "annotation_level": "failure",
    "message": "make test failed",
}


@pytest.fixture
def app(fake_github: FakeGitHub) -> FakeApp:
    app = fake_github.enable_app()
    app.install(7, "octo", ["octo/app"])
    app.install(8, "other", ["other/thing"])
    return app


@pytest.fixture
def token(app: FakeApp) -> str:
    return app.issue(7).token


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers, **kwargs) as r:
        return r.status, await r.json()


def notes(count: int) -> list[dict[str, Any]]:
    return [NOTE | {"start_line": n + 1, "end_line": n + 1} for n in range(count)]


async def test_an_installation_token_creates_updates_and_completes_a_check_run(
    fake_github: FakeGitHub, app: FakeApp, token: str, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    waiting = asyncio.create_task(fake_github.wait_check_completed(SHA))
    created = {"name": "hobotnica/test", "head_sha": SHA, "external_id": "build-1"}
    status, run = await call(session, "POST", url, token, created)
    assert status == 201
    assert {k: run[k] for k in ("id", "name", "head_sha", "status", "conclusion")} == {
        "id": 1,
        "name": "hobotnica/test",
        "head_sha": SHA,
        "status": "queued",
        "conclusion": None,
    }
    assert run["url"] == f"{url}/1" and run["html_url"] == f"{fake_github.url}/octo/app/runs/1"
    assert (run["app"]["id"], run["app"]["slug"]) == (app.app_id, "hobotnica-test")
    assert run["external_id"] == "build-1" and run["details_url"] == "https://hobotnica.test"
    assert run["pull_requests"] == [] and run["check_suite"] == {"id": 1}
    assert run["node_id"] and run["started_at"] and run["completed_at"] is None
    assert run["output"] == {
        "title": None,
        "summary": None,
        "text": None,
        "annotations_count": 0,
        "annotations_url": f"{url}/1/annotations",
    }

    running = {
        "status": "in_progress",
        "started_at": "2024-05-01T10:00:00Z",
        "details_url": "https://ci.example/builds/1",
        "output": {"title": "Running", "summary": "make test"},
        "unknown_key": "ignored, as GitHub does",
    }
    status, run = await call(session, "PATCH", f"{url}/1", token, running)
    assert status == 200 and run["status"] == "in_progress"
    assert run["started_at"] == "2024-05-01T10:00:00Z"
    assert run["details_url"] == "https://ci.example/builds/1"
    assert not waiting.done()

    done = {"conclusion": "success", "output": {"title": "Passed", "summary": "ok", "text": "log"}}
    status, run = await call(session, "PATCH", f"{url}/1", token, done)
    assert status == 200 and (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["completed_at"] is not None and run["output"]["text"] == "log"
    finished = await asyncio.wait_for(waiting, 5)
    assert finished is fake_github.check_runs[1] and finished.conclusion == "success"

    status, read = await call(session, "GET", f"{url}/1")
    assert status == 200 and read == run
    assert finished.history == [created, running, done]
    assert finished.authorizations == [f"token {token}"] * 3
    assert finished.repository == "octo/app"
    assert fake_github.check_run_errors == [] and app.refused_tokens == []
    assert fake_github.check_runs_for(SHA) == [finished]
    assert fake_github.requests == [
        ("POST", RUNS, "installation"),
        ("PATCH", RUNS + "/1", "installation"),
        ("PATCH", RUNS + "/1", "installation"),
        ("GET", RUNS + "/1", "none"),
    ]


async def test_only_a_good_installation_token_of_the_app_writes(
    fake_github: FakeGitHub, app: FakeApp, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    body = {"name": "hobotnica/test", "head_sha": SHA}
    fake_github.add_user("ghp_personal", "alice")
    jwt = get_jwt(app_id=str(app.app_id), private_key=app.private_key_pem)
    refused = {"message": "You must authenticate via a GitHub App."}
    for credential in ("ghp_personal", None, jwt):
        status, answer = await call(session, "POST", url, credential, body)
        assert (status, answer["message"]) == (403, refused["message"]), credential

    other = app.issue(8).token  # good, but not for octo/app
    assert (await call(session, "POST", url, other, body))[0] == 404
    revoked = app.issue(7).token
    app.revoked.add(revoked)
    status, answer = await call(session, "POST", url, revoked, body)
    assert (status, answer["message"]) == (401, "Bad credentials")
    expired = app.issue(7)
    app.now = lambda: expired.expires + 1
    status, answer = await call(session, "POST", url, expired.token, body)
    assert (status, answer["message"]) == (401, "Bad credentials")
    assert [reason for _, reason in app.refused_tokens] == [
        "does not cover octo/app",
        "revoked",
        "expired",
    ]
    assert fake_github.check_runs == {} and fake_github.check_run_errors == []

    fresh = app.issue(7).token  # on the moved clock
    assert (await call(session, "POST", url, fresh, body))[0] == 201
    status, run = await call(
        session, "PATCH", f"{url}/1", "ghp_personal", {"conclusion": "success"}
    )
    assert (status, run) == (403, refused | {"documentation_url": "https://docs.github.com/rest"})
    assert (await call(session, "GET", f"{url}/1", "ghp_personal"))[0] == 200  # anyone reads
    assert (await call(session, "PATCH", f"{url}/9", fresh, {"status": "queued"}))[0] == 404


def created(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "hobotnica/test", "head_sha": SHA, "status": "in_progress"}
    return {k: v for k, v in (body | changes).items() if v is not ...}


def with_output(**changes: Any) -> dict[str, Any]:
    output = {"title": "Build", "summary": "ok"} | changes
    return created(output={k: v for k, v in output.items() if v is not ...})


def with_note(**changes: Any) -> dict[str, Any]:
    note = {k: v for k, v in (NOTE | changes).items() if v is not ...}
    return with_output(annotations=[note])


def with_action(**changes: Any) -> dict[str, Any]:
    action = {"label": "Re-run", "description": "Build again", "identifier": "rerun"} | changes
    return created(actions=[{k: v for k, v in action.items() if v is not ...}])


REFUSED: list[tuple[str, Any, str]] = [
    ("no name", created(name=...), "name wasn't supplied"),
    ("a name not a string", created(name=7), "name is not a string"),
    ("no head_sha", created(head_sha=...), "head_sha wasn't supplied"),
    ("a short head_sha", created(head_sha="abc123"), "head_sha is not a commit SHA"),
    ("a head_sha not hex", created(head_sha="g" * 40), "head_sha is not a commit SHA"),
    ("status waiting", created(status="waiting"), "only be set by GitHub Actions"),
    ("status requested", created(status="requested"), "only be set by GitHub Actions"),
    ("status pending", created(status="pending"), "only be set by GitHub Actions"),
    ("an unknown status", created(status="running"), 'status "running" is not one of'),
    ("completed, no conclusion", created(status="completed"), "conclusion is required"),
    ("completed_at, no conclusion", created(completed_at="2024-05-01T10:00:00Z"), "required"),
    ("an unknown conclusion", created(conclusion="passed"), 'conclusion "passed" is not'),
    ("conclusion stale", created(conclusion="stale"), "'stale' can only be set by GitHub"),
    ("started_at not a time", created(started_at="yesterday"), "started_at is not an ISO 8601"),
    ("started_at a date", created(started_at="2024-05-01"), "started_at is not an ISO 8601"),
    ("no offset", created(started_at="2024-05-01T10:00:00"), "started_at is not an ISO 8601"),
    ("month 13", created(conclusion="success", completed_at="2024-13-01T00:00:00Z"), "ISO"),
    ("external_id a number", created(external_id=5), "external_id is not a string"),
    ("details_url null", created(details_url=None), "details_url is not a string"),
    ("output a string", created(output="all good"), "output is not an object"),
    ("output without title", with_output(title=...), "output.title wasn't supplied"),
    ("output without summary", with_output(summary=...), "output.summary wasn't supplied"),
    ("a long summary", with_output(summary="x" * 65536), "output.summary is longer than 65535"),
    ("a long text", with_output(text="x" * 65536), "output.text is longer than 65535"),
    ("51 annotations", with_output(annotations=notes(51)), "51 items, at most 50"),
    ("a note without path", with_note(path=...), "annotations[0].path wasn't supplied"),
    ("a note without start_line", with_note(start_line=...), "start_line wasn't supplied"),
    ("a note without end_line", with_note(end_line=...), "end_line wasn't supplied"),
    ("a note without level", with_note(annotation_level=...), "annotation_level wasn't"),
    ("a note without message", with_note(message=...), "message wasn't supplied"),
    ("a note level error", with_note(annotation_level="error"), "annotation_level is not one"),
    ("a note line as text", with_note(start_line="3"), "start_line is not a whole number"),
    ("a note at line 0", with_note(start_line=0, end_line=0), "start_line is not a whole"),
    ("columns over lines", with_note(end_line=4, start_column=1), "has columns but"),
    ("a note title of 256", with_note(title="t" * 256), "title is longer than 255"),
    ("raw_details over 64 KB", with_note(raw_details="r" * 65537), "raw_details is larger"),
    ("a message over 64 KB", with_note(message="é" * 32769), "message is larger"),
    ("an image without alt", with_output(images=[{"image_url": "x"}]), "alt wasn't supplied"),
    ("four actions", created(actions=[with_action()["actions"][0]] * 4), "4 items, at most 3"),
    ("a label of 21", with_action(label="l" * 21), "label is longer than 20"),
    ("a description of 41", with_action(description="d" * 41), "description is longer than 40"),
    ("an identifier of 21", with_action(identifier="i" * 21), "identifier is longer than 20"),
    ("an action without id", with_action(identifier=...), "identifier wasn't supplied"),
    ("a body not an object", [created()], "the body is not a JSON object"),
]

LOCAL_TIME = "2024-05-01T10:00:00.5+02:00"
CONCLUSIONS = ["action_required", "cancelled", "failure", "neutral", "success", "skipped"]
CONCLUSIONS += ["timed_out"]
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("the least", {"name": "hobotnica/test", "head_sha": SHA}),
    ("an upper-case SHA", created(head_sha="A" * 40)),
    ("a conclusion alone", created(status=..., conclusion="failure")),
    ("a time with an offset", created(conclusion="timed_out", completed_at=LOCAL_TIME)),
    *[(f"conclusion {c}", created(conclusion=c)) for c in CONCLUSIONS if c != "timed_out"],
    ("50 annotations", with_output(annotations=notes(50))),
    ("a summary of 65535", with_output(summary="x" * 65535, text="y" * 65535)),
    ("columns on one line", with_note(start_column=2, end_column=9, title="t" * 255)),
    ("raw_details of 64 KB", with_note(raw_details="r" * 65536)),
    ("three actions at most", created(actions=[with_action(label="l" * 20)["actions"][0]] * 3)),
    ("unknown keys", created(check_suite_id=3, output={"title": "t", "summary": "s", "x": 1})),
]


async def test_each_rule_refuses_a_bad_body_with_422_and_records_why(
    fake_github: FakeGitHub, token: str, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    for case, body, reason in REFUSED:
        before = len(fake_github.check_run_errors)
        status, answer = await call(session, "POST", url, token, copy.deepcopy(body))
        recorded = fake_github.check_run_errors[before:]
        assert (status, answer["message"]) == (422, "Invalid request."), case
        assert answer["errors"] == recorded and any(reason in e for e in recorded), (case, recorded)
    assert fake_github.check_runs == {}

    fake_github.check_run_errors.clear()
    for case, body in ACCEPTED:
        status, answer = await call(session, "POST", url, token, body)
        assert status == 201, (case, answer)
    assert fake_github.check_run_errors == []
    assert fake_github.check_runs[3].status == "completed"  # a conclusion completes the run

    for body, reason in [
        ({"status": "completed"}, "conclusion is required"),
        ({"conclusion": "stale"}, "'stale' can only be set by GitHub"),
        ({"output": {"summary": "no title"}}, "output.title wasn't supplied"),
        ({"output": {"title": "t", "summary": "s", "annotations": notes(51)}}, "at most 50"),
    ]:
        status, answer = await call(session, "PATCH", f"{url}/1", token, body)
        assert status == 422 and reason in " ".join(fake_github.check_run_errors), body
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    async with session.patch(f"{url}/1", data=b"{not json", headers=headers) as r:
        assert r.status == 400 and fake_github.check_run_errors[-1] == "the body is not JSON"
    assert fake_github.check_runs[1].history == [ACCEPTED[0][1]]  # no refused body was applied


async def test_annotations_add_up_across_updates(
    fake_github: FakeGitHub, token: str, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    await call(session, "POST", url, token, with_output(annotations=notes(50)))
    update = {"output": {"title": "More", "summary": "two more", "annotations": notes(2)}}
    status, run = await call(session, "PATCH", f"{url}/1", token, update)
    assert status == 200 and run["output"]["annotations_count"] == 52
    status, run = await call(session, "PATCH", f"{url}/1", token, {"conclusion": "failure"})
    assert run["output"] | {"annotations_url": ""} == {
        "title": "More",
        "summary": "two more",
        "text": None,
        "annotations_count": 52,
        "annotations_url": "",
    }
    assert len(fake_github.check_runs[1].annotations) == 52

    status, page = await call(session, "GET", f"{url}/1/annotations?per_page=100")
    assert status == 200 and len(page) == 52
    assert page[0] == {
        "path": "Makefile",
        "start_line": 1,
        "end_line": 1,
        "start_column": None,
        "end_column": None,
        "annotation_level": "failure",
        "title": None,
        "message": "make test failed",
        "raw_details": None,
        "blob_href": f"{fake_github.url}/octo/app/blob/{SHA}/Makefile",
    }


async def test_latest_lists_the_newest_run_of_each_name_and_all_lists_every_one(
    fake_github: FakeGitHub, token: str, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    for name, sha in [("hobotnica/test", SHA), ("lint", SHA), ("hobotnica/test", SHA)]:
        await call(session, "POST", url, token, {"name": name, "head_sha": sha})
    await call(session, "POST", url, token, {"name": "hobotnica/test", "head_sha": OTHER_SHA})
    listing = f"{fake_github.url}/repos/octo/app/commits/{SHA}/check-runs"

    async def ids(query: str) -> tuple[int, list[int]]:
        status, listed = await call(session, "GET", listing + query)
        assert status == 200
        return listed["total_count"], [run["id"] for run in listed["check_runs"]]

    assert await ids("") == (2, [2, 3]) == await ids("?filter=latest")
    assert await ids("?filter=all") == (3, [1, 2, 3])
    assert await ids("?check_name=hobotnica/test") == (1, [3])
    assert await ids("?check_name=hobotnica/test&filter=all") == (2, [1, 3])
    assert await ids("?filter=all&per_page=2&page=2") == (3, [3])
    assert await ids("?status=queued&check_name=lint") == (1, [2])
    assert await ids("?status=completed") == (0, [])
    assert (await call(session, "GET", listing + "?filter=newest"))[0] == 422
    assert [run.id for run in fake_github.check_runs_for(SHA)] == [1, 2, 3]
    assert [run.id for run in fake_github.check_runs_for(SHA, "hobotnica/test")] == [1, 3]
    assert fake_github.check_runs[1].check_suite == fake_github.check_runs[3].check_suite
    assert fake_github.check_runs[4].check_suite != fake_github.check_runs[1].check_suite


async def test_the_enterprise_prefix_serves_check_runs_under_api_v3(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    fake = FakeGitHub()
    app = fake.enable_app()
    app.install(7, "octo", ["octo/app"])
    token = app.issue(7).token
    server = await aiohttp_server(fake.app(prefix="/api/v3"))
    fake.url = str(server.make_url("")).rstrip("/")
    body = {"name": "hobotnica/test", "head_sha": SHA}

    status, run = await call(session, "POST", fake.url + "/api/v3" + RUNS, token, body)
    assert status == 201 and run["url"] == f"{fake.url}/api/v3{RUNS}/1"
    assert run["output"]["annotations_url"] == f"{fake.url}/api/v3{RUNS}/1/annotations"
    async with session.post(fake.url + RUNS, json=body) as r:
        assert r.status == 404
    assert fake.requests == [("POST", RUNS, "installation"), ("POST", RUNS, "none")]


async def test_check_run_answers_can_be_held_and_waiting_says_what_there_is(
    fake_github: FakeGitHub, token: str, session: aiohttp.ClientSession
) -> None:
    url = fake_github.url + RUNS
    gate = fake_github.hold_answers("check-runs")
    body = {"name": "hobotnica/test", "head_sha": SHA, "status": "in_progress"}
    posting = asyncio.create_task(call(session, "POST", url, token, body))
    await asyncio.wait_for(fake_github.arrived("check-runs"), 5)
    assert fake_github.check_runs == {} and not posting.done()
    gate.set()
    assert (await posting)[0] == 201

    shown = r"runs for the commit .*\(1, 'hobotnica/test', 'in_progress', None\)"
    with pytest.raises(AssertionError, match=shown):
        await fake_github.wait_check_completed(SHA, timeout=0.05)
