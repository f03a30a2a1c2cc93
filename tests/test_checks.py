"""Check runs end to end (`[github] report = "checks"`): a GitHub App reports each build as a
check run on the fake GitHub, which validates every request as GitHub's REST description does."""

import json
from pathlib import Path
from typing import Any

import pytest

from runner.app import CONTROL
from runner.core.settings import Settings
from tests.conftest import PUBLIC_URL, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_app import FakeApp
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import push_payload
from tests.test_github_app import INSTALLATION, app_headers, app_settings

BROKEN_C = "int main(void) {\n  return missing;\n}\n"
SECRET_VALUE = "s3cr3t-deploy-key-value"


@pytest.fixture
def app(fake_github: FakeGitHub) -> FakeApp:
    fake_app = fake_github.enable_app()
    fake_app.install(INSTALLATION, "octo", ["octo/app"])
    return fake_app


def checks_settings(
    settings: Settings, app: FakeApp, fake_github: FakeGitHub, tmp_path: Path
) -> Settings:
    import dataclasses

    with_app = app_settings(
        settings,
        app,
        tmp_path / "app.pem",
        api_url=fake_github.url,
        git_url=settings.github.git_url,
    )
    return dataclasses.replace(
        with_app, github=dataclasses.replace(with_app.github, report="checks")
    )


def steps(run: Any) -> list[str]:
    return [body.get("conclusion") or body.get("status", "") for body in run.history]


async def test_a_failing_build_is_a_check_run_with_its_compiler_errors_as_annotations(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    recipe = makefile(test=f"@echo using {SECRET_VALUE}\ngcc -c src/broken.c -o /dev/null")
    sha = remote.commit({"Makefile": recipe, "src/broken.c": BROKEN_C})
    projects = [{"repository": "octo/app", "secrets": {"DEPLOY_KEY": SECRET_VALUE}}]
    d = await daemon(checks_settings(make_settings(projects=projects), app, fake_github, tmp_path))

    status, answer = await d.deliver("push", push_payload("octo/app", sha))

    assert status == 202
    run = await fake_github.wait_check_completed(sha)
    assert fake_github.check_run_errors == []
    assert fake_github.statuses == []  # checks instead of statuses, not both
    assert run.conclusion == "failure"
    assert run.external_id == str(answer["builds"][0])
    assert run.details_url == f"{PUBLIC_URL}/builds/{answer['builds'][0]}"
    assert run.output["title"].startswith("make test failed (exit 2)")
    assert "gcc -c src/broken.c" in run.output["text"]
    assert SECRET_VALUE not in json.dumps(run.history) and "using ***" in run.output["text"]
    error, note = run.annotations  # gcc's error, and the note it adds
    assert (error["path"], error["start_line"], error["start_column"]) == ("src/broken.c", 2, 10)
    assert error["annotation_level"] == "failure" and "missing" in error["message"]
    assert note["annotation_level"] == "notice"
    assert all(a.startswith("token ") and a[6:] in app.issued for a in run.authorizations)
    assert steps(run)[-1] == "failure" and steps(run)[0] in ("queued", "in_progress", "failure")
    await d.stop()


async def test_success_runs_queued_in_progress_completed(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@echo all good")})
    d = await daemon(checks_settings(make_settings(), app, fake_github, tmp_path))
    await d.deliver("push", push_payload("octo/app", sha))

    run = await fake_github.wait_check_completed(sha)

    assert run.conclusion == "success" and "all good" in run.output["text"]
    order = ["queued", "in_progress", "success"]
    assert steps(run) == [step for step in order if step in steps(run)]  # some may collapse
    assert len(fake_github.check_runs_for(sha, "hobotnica/test")) == 1
    await d.stop()


async def test_timeout_cancel_and_supersede_end_the_run_with_their_conclusions(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    slow = makefile(test="@sleep 300")
    timing_out = remote.commit({"Makefile": slow}, branch="slow")
    settings = checks_settings(make_settings(builds={"timeout": 1}), app, fake_github, tmp_path)
    d = await daemon(settings)
    await d.deliver("push", push_payload("octo/app", timing_out, branch="slow"))
    assert (await fake_github.wait_check_completed(timing_out)).conclusion == "timed_out"

    # Superseded while running (a newer push to the branch stops it), then cancelled by a person.
    first = remote.commit({"Makefile": slow, "n": "1"}, branch="work")
    await d.deliver("push", push_payload("octo/app", first, branch="work"))
    await fake_github.wait_until(lambda: "in_progress" in _all_steps(fake_github, first))
    second = remote.commit({"Makefile": slow, "n": "2"}, branch="work")
    _, answer = await d.deliver("push", push_payload("octo/app", second, branch="work"))
    assert (await fake_github.wait_check_completed(first)).conclusion == "skipped"
    await fake_github.wait_until(lambda: "in_progress" in _all_steps(fake_github, second))
    assert d.client is not None
    await d.client.app[CONTROL].cancel(answer["builds"][0], by="alice")
    assert (await fake_github.wait_check_completed(second)).conclusion == "cancelled"
    await d.stop()


async def test_rerun_from_github_runs_the_build_again(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    app: FakeApp,
    tmp_path: Path,
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@echo run")}, branch="feature")
    d = await daemon(checks_settings(make_settings(), app, fake_github, tmp_path))
    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    first = await fake_github.wait_check_completed(sha)

    event = {
        "action": "rerequested",
        "check_run": {
            "id": first.id,
            "name": "hobotnica/test",
            "head_sha": sha,
            "external_id": first.external_id,
            "app": {"id": app.app_id, "slug": "hobotnica-test"},
        },
        "repository": push_payload("octo/app", sha)["repository"],
        "sender": {"login": "octocat"},
        "installation": {"id": INSTALLATION},
    }
    body = json.dumps(event).encode()
    status, rerun = await d.post_raw(body, app_headers(body, "check_run", app))

    assert status == 202 and len(rerun["builds"]) == 1
    assert rerun["builds"][0] != answer["builds"][0]
    await fake_github.wait_until(
        lambda: [r.status for r in fake_github.check_runs_for(sha)] == ["completed"] * 2
    )
    again = fake_github.check_runs_for(sha, "hobotnica/test")[-1]
    assert again.external_id == str(rerun["builds"][0]) and again.conclusion == "success"
    assert d.client is not None  # the page and the API say who pressed the button
    shown = await (await d.client.get(f"/api/builds/{rerun['builds'][0]}")).json()
    assert shown["asked_by"] == "octocat"

    # "Re-run all checks": the suite names the commit, whose latest build runs again.
    suite = {
        "action": "rerequested",
        "check_suite": {"id": 5, "head_sha": sha, "app": {"id": app.app_id}},
        "repository": event["repository"],
        "sender": {"login": "octocat"},
        "installation": {"id": INSTALLATION},
    }
    body = json.dumps(suite).encode()
    status, all_again = await d.post_raw(body, app_headers(body, "check_suite", app))
    assert status == 202 and len(all_again["builds"]) == 1
    await fake_github.wait_until(
        lambda: [r.status for r in fake_github.check_runs_for(sha)] == ["completed"] * 3
    )

    # Another App's check run, with an id that looks like a build: nothing runs.
    event["check_run"]["app"] = {"id": 99, "slug": "someone-else"}
    body = json.dumps(event).encode()
    status, ignored = await d.post_raw(body, app_headers(body, "check_run", app))
    assert (status, ignored["builds"]) == (202, [])
    await d.stop()


def _all_steps(fake: FakeGitHub, sha: str) -> list[str]:
    return [step for run in fake.check_runs_for(sha) for step in steps(run)]
