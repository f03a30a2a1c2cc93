"""The core loop end to end: a signed webhook over HTTP → real git + real make → commit statuses.

Each test drives the running app on a loopback port with payloads shaped like GitHub's, against
real bare repositories served as file:// URLs, and reads what the fake GitHub was sent.
"""

from pathlib import Path
from typing import Any

from tests.conftest import (
    DAEMON_ENVIRONMENT,
    PUBLIC_URL,
    SECRET,
    TOKEN,
    DaemonFactory,
    SettingsFactory,
)
from tests.support.bubblewrap import require_bubblewrap
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import (
    PRINT_MAKES_ENVIRONMENT,
    Remote,
    environment_in_log,
    git,
    make_remote,
    makefile,
    wait_for_file,
)
from tests.support.processes import processes_with_marker
from tests.support.webhooks import pull_request_payload, push_payload

PASSING = makefile(test="@echo testing $$HOBOTNICA_SHA", deploy="@echo deploying $$HOBOTNICA_SHA")


async def test_push_runs_make_test_and_reports_success(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit(
        {"Makefile": makefile(test="@echo hello from make test\ngit rev-parse HEAD")},
        branch="feature",
    )
    d = await daemon(make_settings())

    status, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    assert status == 202
    assert len(answer["builds"]) == 1
    build_id = answer["builds"][0]
    final = await fake_github.wait_final(sha)
    assert final.state == "success"
    assert final.target_url == f"{PUBLIC_URL}/builds/{build_id}"
    # Pending states may be collapsed when a newer one is already waiting; the order holds.
    posted = [(s.state, s.description) for s in fake_github.for_commit(sha)]
    expected = [
        ("pending", "Queued"),
        ("pending", "Running make test"),
        (final.state, final.description),
    ]
    assert posted == [state for state in expected if state in posted]
    assert posted[-1] == ("success", final.description)
    assert all(s.authorization == f"token {TOKEN}" for s in fake_github.statuses)
    log = await d.log(build_id)
    assert "hello from make test" in log
    assert sha in log.split("hello from make test", 1)[1]  # `git rev-parse HEAD` is the commit
    build = await d.build(build_id)
    assert (build["state"], build["exit_code"], build["branch"]) == ("success", 0, "feature")
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []


async def test_failing_tests_report_failure_and_never_deploy(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@echo broken; exit 3", deploy="@echo no")})
    d = await daemon(make_settings())

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="main"))

    final = await fake_github.wait_final(sha)
    assert final.state == "failure"
    assert final.description.startswith("make test failed (exit 2)")  # make exits 2
    assert len(final.description) < 140
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []
    # A deploy would have been created in the same transaction that ended the test build.
    assert (await d.client.get(f"/api/builds/{answer['builds'][0] + 1}")).status == 404


async def test_deploy_follows_green_tests_on_the_deploy_branch_only(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    main_sha = remote.commit({"Makefile": PASSING}, branch="main")
    feature_sha = remote.commit({"README": "x"}, branch="feature")
    d = await daemon(make_settings())

    _, on_main = await d.deliver("push", push_payload("octo/app", main_sha, branch="main"))
    deploy = await fake_github.wait_final(main_sha, "hobotnica/deploy")
    _, on_feature = await d.deliver("push", push_payload("octo/app", feature_sha, branch="feature"))
    await fake_github.wait_final(feature_sha)

    assert deploy.state == "success"
    test_id = on_main["builds"][0]
    deploy_id = int(deploy.target_url.rsplit("/", 1)[1])
    assert deploy_id != test_id
    deploy_build = await d.build(deploy_id)
    assert (deploy_build["job"], deploy_build["sha"]) == ("deploy", main_sha)
    assert f"deploying {main_sha}" in await d.log(deploy_id)
    test_final = fake_github.for_commit(main_sha)[-1]
    assert test_final.state == "success"
    assert fake_github.for_commit(feature_sha, "hobotnica/deploy") == []
    assert (await d.client.get(f"/api/builds/{on_feature['builds'][0] + 1}")).status == 404


async def test_configured_deploy_branch_overrides_the_default_branch(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": PASSING}, branch="production")
    d = await daemon(make_settings([{"repository": "octo/app", "deploy_branch": "production"}]))

    await d.deliver("push", push_payload("octo/app", sha, branch="production"))

    assert (await fake_github.wait_final(sha, "hobotnica/deploy")).state == "success"


async def test_pull_request_from_the_same_repository_tests_its_head(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    remote.commit({"Makefile": PASSING}, branch="main")
    sha = remote.commit(
        {"Makefile": makefile(test="@echo PR=$$HOBOTNICA_PULL_REQUEST REF=$$HOBOTNICA_REF")},
        branch="topic",
    )
    remote.push_pull_ref(7, sha)
    d = await daemon(make_settings())

    status, answer = await d.deliver(
        "pull_request", pull_request_payload("octo/app", sha, number=7, branch="topic")
    )

    assert status == 202
    assert (await fake_github.wait_final(sha)).state == "success"
    assert "PR=7 REF=refs/pull/7/head" in await d.log(answer["builds"][0])
    build = await d.build(answer["builds"][0])
    assert (build["pull_request"], build["branch"], build["message"]) == (7, "topic", "Update")
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []


async def test_pull_requests_from_forks(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    require_bubblewrap()  # forks build only in the sandbox
    sha = remote.commit(
        {"Makefile": makefile(test="@echo key=[$$DEPLOY_KEY]", deploy="@echo no")}, branch="main"
    )
    remote.push_pull_ref(9, sha)
    fork_pr = pull_request_payload("octo/app", sha, number=9, head_repository="stranger/app")
    project = {"repository": "octo/app", "secrets": {"DEPLOY_KEY": "super-secret-key"}}

    by_default = await daemon(make_settings([project]))
    status, answer = await by_default.deliver("pull_request", fork_pr)
    assert (status, answer["builds"]) == (202, [])
    await by_default.stop()

    allowed = await daemon(
        make_settings(
            [project], builds={"sandbox": "bubblewrap"}, pull_requests={"forks": "without-secrets"}
        )
    )
    status, answer = await allowed.deliver("pull_request", fork_pr)
    assert status == 202
    assert (await fake_github.wait_final(sha)).state == "success"
    assert "key=[]" in await allowed.log(answer["builds"][0])
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []


async def test_skip_ci_tags_and_deletions_do_not_build(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": PASSING}, branch="main")
    d = await daemon(make_settings())
    pushes: list[dict[str, Any]] = [
        push_payload("octo/app", sha, message="Fix typo [skip ci]"),
        push_payload("octo/app", sha, message="[CI SKIP] docs only"),
        push_payload("octo/app", sha, tag="v1.0.0"),
        push_payload("octo/app", sha, branch="gone", deleted=True),
    ]
    for payload in pushes:
        status, answer = await d.deliver("push", payload)
        assert (status, answer["builds"]) == (202, [])
        assert answer["ignored"]
    # A build that is created later gets id 1: nothing above created one.
    _, answer = await d.deliver("push", push_payload("octo/app", sha))
    assert answer["builds"] == [1]
    await fake_github.wait_final(sha)


async def test_skip_ci_in_a_pull_request_head_commit(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": makefile(test="@exit 1")}, "WIP [skip ci]", branch="wip")
    remote.push_pull_ref(3, sha)
    d = await daemon(make_settings())

    await d.deliver("pull_request", pull_request_payload("octo/app", sha, number=3, branch="wip"))

    final = await fake_github.wait_final(sha)
    # Never green: a pull request's author must not be able to pass a required check unbuilt.
    assert (final.state, final.description) == ("error", "Not built: [skip ci] in the head commit")


async def test_duplicate_delivery_starts_nothing_even_after_a_restart(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": PASSING}, branch="feature")
    d = await daemon(make_settings())
    payload = push_payload("octo/app", sha, branch="feature")
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

    first = await d.deliver("push", payload, delivery)
    await fake_github.wait_final(sha)
    await d.restart()
    again = await d.deliver("push", payload, delivery)

    assert first[0] == 202
    assert again == (200, {"delivery": delivery, "duplicate": True, "builds": []})
    assert (await d.client.get("/api/builds/2")).status == 404
    posted = fake_github.for_commit(sha)
    assert [s.state for s in posted].count("success") == 1
    assert {s.target_url for s in posted} == {f"{PUBLIC_URL}/builds/1"}


async def test_newer_push_supersedes_queued_builds_of_the_branch(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    blocker = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="blocker")
    older = [remote.commit({"Makefile": PASSING, "n": str(i)}, branch="feature") for i in range(2)]
    newest = remote.commit({"Makefile": PASSING, "n": "last"}, branch="feature")
    other = remote.commit({"Makefile": PASSING}, branch="other")
    d = await daemon(make_settings())

    await d.deliver("push", push_payload("octo/app", blocker, branch="blocker"))
    await fake_github.wait_running(blocker)
    ids = []
    for sha, branch in [*((s, "feature") for s in older), (other, "other"), (newest, "feature")]:
        _, answer = await d.deliver("push", push_payload("octo/app", sha, branch=branch))
        ids.append(answer["builds"][0])
    release.touch()
    await fake_github.wait_final(newest)
    await fake_github.wait_final(other)

    # Each push supersedes the one queued before it on the same branch.
    for build_id, sha, by in zip(ids[:2], older, [older[1], newest], strict=True):
        build = await d.build(build_id)
        assert (build["state"], build["description"]) == ("error", f"Superseded by {by[:7]}")
        assert build["started_at"] is None
        posted = [s.state for s in fake_github.for_commit(sha)]
        assert posted in ([], ["pending", "error"]), posted  # never left pending
    assert (await d.build(ids[2]))["state"] == "success"  # another branch is not superseded
    assert (await d.build(ids[3]))["state"] == "success"


async def test_a_build_superseded_while_github_is_being_told_it_is_queued_still_ends(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    """Its `pending` post is in flight when a newer push supersedes the build: GitHub shows
    that `pending` once the post lands, so it must then be told how the build ended."""
    release = tmp_path / "release"
    blocker = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="blocker")
    first = remote.commit({"Makefile": PASSING, "n": "1"}, branch="feature")
    newest = remote.commit({"Makefile": PASSING, "n": "2"}, branch="feature")
    d = await daemon(make_settings())
    await d.deliver("push", push_payload("octo/app", blocker, branch="blocker"))
    await fake_github.wait_running(blocker)  # the repository's builds wait behind this one
    held = fake_github.hold(first)

    _, answer = await d.deliver("push", push_payload("octo/app", first, branch="feature"))
    in_flight = await fake_github.wait_held(held)
    await d.deliver("push", push_payload("octo/app", newest, branch="feature"))
    build = await d.build(answer["builds"][0])
    assert (build["state"], build["description"]) == ("error", f"Superseded by {newest[:7]}")
    held.release()
    release.touch()

    assert (in_flight["state"], in_flight["description"]) == ("pending", "Queued")
    final = await fake_github.wait_final(first)
    assert (final.state, final.description) == ("error", f"Superseded by {newest[:7]}")
    assert [s.state for s in fake_github.for_commit(first)] == ["pending", "error"]
    assert (await fake_github.wait_final(newest)).state == "success"


async def test_repositories_build_in_parallel_and_one_repository_in_order(
    tmp_path: Path,
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    remote: Remote,
) -> None:
    release = tmp_path / "release"
    slow = remote.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="a")
    queued_behind = remote.commit({"Makefile": PASSING}, branch="b")
    other_repo = make_remote(remote_root, "octo/lib")
    other = other_repo.commit({"Makefile": PASSING})
    d = await daemon(make_settings([{"repository": "octo/app"}, {"repository": "octo/lib"}]))

    await d.deliver("push", push_payload("octo/app", slow, branch="a"))
    _, behind = await d.deliver("push", push_payload("octo/app", queued_behind, branch="b"))
    await d.deliver("push", push_payload("octo/lib", other))

    # octo/lib finishes while octo/app's first build still blocks, and octo/app's second waits.
    assert (await fake_github.wait_final(other)).state == "success"
    waiting = await d.build(behind["builds"][0])
    assert (waiting["state"], waiting["started_at"]) == ("queued", None)
    assert "Running make test" not in [s.description for s in fake_github.for_commit(queued_behind)]
    release.touch()
    assert (await fake_github.wait_final(queued_behind)).state == "success"
    slow_posts = [s.state for s in fake_github.for_commit(slow)]
    assert slow_posts[-1] == "success"


async def test_build_environment_is_an_allowlist_plus_hobotnica_and_project_values(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": makefile(test=PRINT_MAKES_ENVIRONMENT)}, branch="feature")
    project = {
        "repository": "octo/app",
        "env": {"LEVEL": "production"},
        "secrets": {"COVERALLS_TOKEN": "coveralls-secret-value"},
    }
    d = await daemon(make_settings([project]))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))
    await fake_github.wait_final(sha)

    build_id = answer["builds"][0]
    env = environment_in_log(await d.log(build_id))
    expected = {
        "CI": "true",
        "HOBOTNICA": "1",
        "HOBOTNICA_BUILD_ID": str(build_id),
        "HOBOTNICA_BUILD_URL": f"{PUBLIC_URL}/builds/{build_id}",
        "HOBOTNICA_REPOSITORY": "octo/app",
        "HOBOTNICA_SHA": sha,
        "HOBOTNICA_REF": "refs/heads/feature",
        "HOBOTNICA_BRANCH": "feature",
        "LEVEL": "production",
        "COVERALLS_TOKEN": "***",  # present, and masked in the log
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    assert {name: env.get(name) for name in expected} == expected
    assert "PATH" in env and "HOME" in env
    for leaked in ("VIRTUAL_ENV", "PYTHONPATH", "POETRY_HOME", "AWS_SECRET_ACCESS_KEY"):
        assert leaked not in env
    # Nothing else: the allowlist of the daemon's environment, Hobotnica's, the project's.
    assert env == {
        **expected,
        "PATH": DAEMON_ENVIRONMENT["PATH"],
        "HOME": DAEMON_ENVIRONMENT["HOME"],
        "HOBOTNICA_JOB": "test",
        "HOBOTNICA_ATTEMPT": "1",
        "HOBOTNICA_TRIGGER": "push",
    }
    log = await d.log(build_id)
    assert TOKEN not in log and SECRET not in log and "coveralls-secret-value" not in log


async def test_secrets_are_masked_in_log_page_and_api(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    secret = "hunter2-but-longer"
    sha = remote.commit(
        {
            "Makefile": makefile(
                test="@echo the key is $$API_KEY\n@printf '%s' \"$$API_KEY\" | base64"
            )
        },
        message=f"Oops, committed {secret}",
        branch="feature",
    )
    d = await daemon(make_settings([{"repository": "octo/app", "secrets": {"API_KEY": secret}}]))

    _, answer = await d.deliver(
        "push", push_payload("octo/app", sha, branch="feature", message=f"Oops, committed {secret}")
    )
    await fake_github.wait_final(sha)

    build_id = answer["builds"][0]
    log, page = await d.log(build_id), await d.page(build_id)
    api = await d.client.get(f"/api/builds/{build_id}")
    assert "the key is ***" in log
    for shown in (log, page, await api.text()):
        assert secret not in shown
        assert "aHVudGVyMi1idXQtbG9uZ2Vy" not in shown  # base64 of the secret
    assert "Oops, committed ***" in page


async def test_timeout_ends_the_whole_process_tree(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    recipe = "@setsid sleep 300 > /dev/null 2>&1 &\n@echo started\n@sleep 300"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    d = await daemon(make_settings(builds={"timeout": 1, "kill_grace": 1}))

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    final = await fake_github.wait_final(sha)
    build_id = answer["builds"][0]
    assert (final.state, final.description) == ("error", "Timed out after 1 s")
    assert processes_with_marker(f"{PUBLIC_URL}/builds/{build_id}") == []
    log = await d.log(build_id)
    assert "started" in log and "sleep" in log  # the log names what was left behind and ended


async def test_processes_left_behind_by_a_finished_build_are_ended(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    recipe = "@setsid sleep 300 > /dev/null 2>&1 &\n@echo done"
    sha = remote.commit({"Makefile": makefile(test=recipe)}, branch="feature")
    d = await daemon(make_settings())

    _, answer = await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    assert (await fake_github.wait_final(sha)).state == "success"
    assert processes_with_marker(f"{PUBLIC_URL}/builds/{answer['builds'][0]}") == []


async def test_unknown_commit_ends_error_with_the_reason(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    remote.commit({"Makefile": PASSING})
    missing = "0123456789abcdef0123456789abcdef01234567"
    d = await daemon(make_settings())

    await d.deliver("push", push_payload("octo/app", missing, branch="feature"))

    final = await fake_github.wait_final(missing)
    assert final.state == "error"
    assert final.description.startswith("Checkout failed: commit 0123456 not found")


async def test_a_half_made_mirror_is_made_again_and_git_never_climbs_above_it(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    """A build stopped during `git init` leaves a mirror git does not recognise. Git then looked
    for a repository further up, here the one around the data directory (as in a checkout
    running `make run`), and fetched into it."""
    sha = remote.commit({"Makefile": PASSING, "v": "1"}, branch="feature")
    git(remote.work, "tag", "v1.0")
    git(remote.work, "push", "-q", "origin", "v1.0")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "the checkout around the data dir")
    refs_around = git(tmp_path, "for-each-ref")
    settings = make_settings()
    half_made = settings.data_dir / "mirrors" / "octo" / "app.git"
    half_made.mkdir(parents=True)
    (half_made / "HEAD").write_text("ref: refs/heads/main\n")
    d = await daemon(settings)

    await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    final = await fake_github.wait_final(sha)
    assert (final.state, final.description.split(" ")[0]) == ("success", "make")
    assert git(tmp_path, "for-each-ref") == refs_around
    assert git(half_made, "rev-parse", "refs/tags/v1.0^{commit}") == sha


async def test_a_failing_github_does_not_lose_the_result(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    sha = remote.commit({"Makefile": PASSING}, branch="feature")
    fake_github.scripted = [(502, {}), (502, {})]
    d = await daemon(make_settings())

    await d.deliver("push", push_payload("octo/app", sha, branch="feature"))

    assert (await fake_github.wait_final(sha)).state == "success"
    assert fake_github.scripted == []  # both failures were met and retried past


async def test_an_old_push_redelivered_late_neither_supersedes_nor_deploys(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    older = remote.commit({"Makefile": PASSING, "v": "1"}, branch="main")
    newer = remote.commit({"Makefile": PASSING, "v": "2"}, branch="main")
    d = await daemon(make_settings())

    await d.deliver("push", push_payload("octo/app", newer, branch="main", pushed_at=2_000_000_000))
    assert (await fake_github.wait_final(newer, "hobotnica/deploy")).state == "success"
    # The older push's delivery failed at the time; GitHub redelivers it now (catch-up).
    _, late = await d.deliver(
        "push", push_payload("octo/app", older, branch="main", pushed_at=1_999_999_000)
    )

    build = await d.build(late["builds"][0])
    assert (build["state"], build["description"]) == ("error", f"Superseded by {newer[:7]}")
    assert build["started_at"] is None
    assert fake_github.for_commit(older) == []  # GitHub never hears of it
    assert fake_github.for_commit(older, "hobotnica/deploy") == []
    assert (await d.client.get(f"/api/builds/{late['builds'][0] + 1}")).status == 404
