"""Fork pull requests with approval (`pull_requests.forks = "approve"`): a fork's build waits,
pending "Waiting for approval", until a person approves it; it then runs in the sandbox without
the project's secrets, and never deploys. A new push to the fork waits again."""

from runner.core.settings import Project, PullRequestSettings
from runner.intake.pull_request import plan_pull_request
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api import ApiClient
from tests.support.bubblewrap import require_bubblewrap
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import pull_request_payload, push_payload
from tests.test_pages_auth import PRIVATE, csrf_of, sign_in

APPROVE = PullRequestSettings(forks="approve")
ALICE_TOKEN = "ghp_alice_can_write_0123456789"


def test_only_a_forks_pull_request_needs_approval() -> None:
    project = Project(repository="octo/app")

    def find(_name: str) -> Project:
        return project

    fork = pull_request_payload("octo/app", "a" * 40, head_repository="stranger/app")
    own = pull_request_payload("octo/app", "b" * 40)

    (from_fork,) = plan_pull_request(fork, find, APPROVE).requests
    (from_branch,) = plan_pull_request(own, find, APPROVE).requests
    assert from_fork.needs_approval and from_fork.from_fork
    assert not from_branch.needs_approval


async def test_a_fork_runs_only_after_approval_without_secrets(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    require_bubblewrap()
    recipe = makefile(test="@echo key=[$$DEPLOY_KEY] ran $$HOBOTNICA_SHA", deploy="@echo no")
    sha = remote.commit({"Makefile": recipe}, branch="contribution")
    remote.push_pull_ref(9, sha)
    main = remote.commit({"Makefile": recipe, "main": "1"}, branch="main")
    project = {"repository": "octo/app", "secrets": {"DEPLOY_KEY": "super-secret-key"}}
    settings = make_settings(
        [project], builds={"sandbox": "bubblewrap"}, pull_requests={"forks": "approve"}
    )
    d = await daemon(settings)
    fork_pr = pull_request_payload(
        "octo/app", sha, number=9, branch="contribution", head_repository="stranger/app"
    )

    status, answer = await d.deliver("pull_request", fork_pr)
    (waiting,) = answer["builds"]
    assert status == 202
    await fake_github.wait_until(
        lambda: [s.description for s in fake_github.for_commit(sha)] == ["Waiting for approval"]
    )
    # It holds nothing up: the repository's other builds run meanwhile.
    await d.deliver("push", push_payload("octo/app", main))
    assert (await fake_github.wait_final(main)).state == "success"
    build = await d.build(waiting)
    assert (build["state"], build["approval"]) == ("queued", "waiting")
    assert "Waiting: this pull request comes from a fork" in await d.page(waiting)

    # Someone with write access approves it.
    fake_github.add_user(ALICE_TOKEN, "alice")
    fake_github.grant("alice", "octo/app", "WRITE")
    assert d.client is not None
    api = ApiClient(d.client, ALICE_TOKEN, "alice")
    approved = await api.call("POST", f"/api/builds/{waiting}/approve")
    assert approved.status == 202 and approved.body["approval"] == "approved by alice"

    assert (await fake_github.wait_final(sha)).state == "success"
    log = await d.log(waiting)
    assert f"key=[] ran {sha}" in log  # ran, without the project's secret
    assert "Approved by alice" in await d.page(waiting)
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []
    again = await api.call("POST", f"/api/builds/{waiting}/approve")
    assert again.status == 409

    # A new push to the fork: a new build, which waits for its own approval.
    newer = remote.commit({"Makefile": recipe, "more": "1"}, branch="contribution")
    remote.push_pull_ref(9, newer)
    synchronize = pull_request_payload(
        "octo/app",
        newer,
        number=9,
        action="synchronize",
        branch="contribution",
        head_repository="stranger/app",
    )
    _, answer = await d.deliver("pull_request", synchronize)
    await fake_github.wait_until(
        lambda: [s.description for s in fake_github.for_commit(newer)] == ["Waiting for approval"]
    )
    assert (await d.build(answer["builds"][0]))["approval"] == "waiting"
    await d.stop()


async def test_a_signed_in_user_approves_on_the_page_and_a_reader_cannot_through_the_api(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    require_bubblewrap()
    sha = remote.commit({"Makefile": makefile(test="@echo ran")}, branch="contribution")
    remote.push_pull_ref(4, sha)
    settings = make_settings(
        builds={"sandbox": "bubblewrap"}, pull_requests={"forks": "approve"}, ui=PRIVATE
    )
    d = await daemon(settings)
    fork_pr = pull_request_payload("octo/app", sha, number=4, head_repository="stranger/app")
    _, answer = await d.deliver("pull_request", fork_pr)
    (waiting,) = answer["builds"]
    fake_github.add_user("ghp_reader_token_0123456789", "reader")
    fake_github.grant("reader", "octo/app", "READ")
    assert d.client is not None

    refused = await ApiClient(d.client, "ghp_reader_token_0123456789", "reader").call(
        "POST", f"/api/builds/{waiting}/approve"
    )
    assert refused.status == 403

    await sign_in(d)
    page = await (await d.client.get(f"/builds/{waiting}")).text()
    assert "Approve and run" in page
    approved = await d.client.post(
        f"/builds/{waiting}/approve",
        data={"csrf": await csrf_of(d, waiting)},
        allow_redirects=False,
    )
    assert approved.status == 303 and "notice=approved" in approved.headers["Location"]
    assert (await fake_github.wait_final(sha)).state == "success"
    page = await (await d.client.get(f"/builds/{waiting}")).text()
    assert "Approved by alice" in page and "Approve and run" not in page
    await d.stop()


async def test_closing_the_pull_request_ends_the_build_that_waits(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    require_bubblewrap()
    sha = remote.commit({"Makefile": makefile(test="@echo ran")}, branch="contribution")
    remote.push_pull_ref(5, sha)
    settings = make_settings(builds={"sandbox": "bubblewrap"}, pull_requests={"forks": "approve"})
    d = await daemon(settings)
    opened = pull_request_payload("octo/app", sha, number=5, head_repository="stranger/app")
    _, answer = await d.deliver("pull_request", opened)
    (waiting,) = answer["builds"]
    await fake_github.wait_until(lambda: bool(fake_github.for_commit(sha)))  # GitHub was told

    closed = pull_request_payload(
        "octo/app", sha, number=5, action="closed", head_repository="stranger/app"
    )
    status, _ = await d.deliver("pull_request", closed)

    assert status == 202
    final = await fake_github.wait_final(sha)
    assert (final.state, final.description) == (
        "error",
        "Not built: the pull request was closed before anyone approved it",
    )
    fake_github.add_user(ALICE_TOKEN, "alice")
    fake_github.grant("alice", "octo/app", "WRITE")
    assert d.client is not None
    late = await ApiClient(d.client, ALICE_TOKEN, "alice").call(
        "POST", f"/api/builds/{waiting}/approve"
    )
    assert late.status == 409  # nothing left to approve
    await d.stop()
