"""What a push or pull request asks for: `plan_push` and `plan_pull_request`, pure, no server.

Payloads are GitHub's own examples (tests/payloads, from @octokit/webhooks-examples), retargeted
or edited field by field where a case needs it.
"""

import copy
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from runner.core.models import BuildRequest, Job
from runner.core.settings import BuildSettings, Project, PullRequestSettings
from runner.intake.plan import PayloadError, Plan
from runner.intake.pull_request import plan_pull_request
from runner.intake.push import plan_push
from tests.support.webhooks import example, pull_request_payload, push_payload

SHA = "0123456789abcdef0123456789abcdef01234567"
REPOSITORY = "octo/app"
DEFAULT_BUILDS = BuildSettings()
TAG_BUILDS = BuildSettings(build_tags=True)
FORKS_NEVER = PullRequestSettings(forks="never")
FORKS_WITHOUT_SECRETS = PullRequestSettings(forks="without-secrets")


class Lookup:
    """A `ProjectLookup` over fixed projects that remembers every name it was asked about."""

    def __init__(self, *projects: Project) -> None:
        self._projects = {project.repository.lower(): project for project in projects}
        self.asked: list[str] = []

    def __call__(self, repository: str) -> Project | None:
        self.asked.append(repository)
        return self._projects.get(repository.lower())


def registered(repository: str = REPOSITORY, deploy_branch: str | None = None) -> Lookup:
    return Lookup(Project(repository=repository, deploy_branch=deploy_branch))


def only_request(plan: Plan) -> BuildRequest:
    assert plan.ignored is None
    assert len(plan.requests) == 1
    return plan.requests[0]


def assert_ignored(plan: Plan) -> None:
    assert plan.requests == ()
    assert plan.ignored


def git_accepts_branch(name: str) -> bool:
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False, cwd="/"
    )
    return result.returncode == 0


# --- push: what is built ------------------------------------------------------------------------


def test_push_to_a_branch_is_one_test_request_for_after() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="feature/login", message="Add the login form")
    request = only_request(plan_push(payload, registered(), DEFAULT_BUILDS))
    assert request.repository == REPOSITORY
    assert request.sha == SHA
    assert request.ref == "refs/heads/feature/login"
    assert request.branch == "feature/login"
    assert request.job is Job.TEST
    assert request.pull_request is None
    assert request.from_fork is False
    assert request.deploy_after_test is False
    assert request.message == "Add the login form"


def test_githubs_own_push_example_is_built_and_deploys_on_its_default_branch() -> None:
    payload = example("push")  # Codertocat/Hello-World, refs/heads/master, default "master"
    lookup = registered("Codertocat/Hello-World")
    request = only_request(plan_push(payload, lookup, DEFAULT_BUILDS))
    assert request.sha == payload["after"]
    assert request.ref == "refs/heads/master"
    assert request.branch == "master"
    assert request.deploy_after_test is True
    assert request.message == payload["head_commit"]["message"]
    assert request.author == payload["head_commit"]["author"]["name"]


@pytest.mark.parametrize(
    ("before", "created", "expected"),
    [
        ("b" * 40, False, "b" * 40),  # the push's changes are before...after
        ("0" * 40, True, ""),  # a new branch: nothing to compare with
        ("b" * 40, True, ""),
        ("../../etc", False, ""),  # not a sha: never put in a link
    ],
)
def test_a_push_remembers_the_head_it_moved_the_branch_from(
    before: str, created: bool, expected: str
) -> None:
    payload = push_payload(REPOSITORY, SHA)
    payload.update(before=before, created=created)
    assert only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).before == expected


def test_request_names_the_project_as_registered_not_as_the_payload_spells_it() -> None:
    payload = push_payload("Octo/App", SHA)
    request = only_request(plan_push(payload, registered("octo/app"), DEFAULT_BUILDS))
    assert request.repository == "octo/app"


def test_push_to_the_default_branch_deploys_when_no_deploy_branch_is_configured() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", default_branch="main")
    assert only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).deploy_after_test


def test_push_to_another_branch_does_not_deploy() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="develop", default_branch="main")
    assert not only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).deploy_after_test


def test_default_branch_comes_from_the_payload() -> None:
    lookup = registered()
    develop = push_payload(REPOSITORY, SHA, branch="develop", default_branch="develop")
    main = push_payload(REPOSITORY, SHA, branch="main", default_branch="develop")
    assert only_request(plan_push(develop, lookup, DEFAULT_BUILDS)).deploy_after_test
    assert not only_request(plan_push(main, lookup, DEFAULT_BUILDS)).deploy_after_test


def test_configured_deploy_branch_wins_over_the_default_branch() -> None:
    lookup = registered(deploy_branch="production")
    production = push_payload(REPOSITORY, SHA, branch="production", default_branch="main")
    main = push_payload(REPOSITORY, SHA, branch="main", default_branch="main")
    assert only_request(plan_push(production, lookup, DEFAULT_BUILDS)).deploy_after_test
    assert not only_request(plan_push(main, lookup, DEFAULT_BUILDS)).deploy_after_test


def test_deploy_branch_must_match_exactly() -> None:
    lookup = registered(deploy_branch="main")
    for branch in ("Main", "main2", "feature/main", "mai"):
        payload = push_payload(REPOSITORY, SHA, branch=branch, default_branch="main")
        assert not only_request(plan_push(payload, lookup, DEFAULT_BUILDS)).deploy_after_test


def test_without_a_default_branch_in_the_payload_nothing_deploys() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main")
    del payload["repository"]["default_branch"]
    assert not only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).deploy_after_test


def test_unregistered_repository_is_ignored() -> None:
    payload = push_payload("someone/else", SHA)
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


def test_push_without_head_commit_is_still_built() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="feature")
    payload["head_commit"] = None
    request = only_request(plan_push(payload, registered(), DEFAULT_BUILDS))
    assert request.sha == SHA
    assert request.message == ""


# --- push: tags and deletions -------------------------------------------------------------------


def test_tag_push_is_ignored_by_default() -> None:
    payload = example("push-tag")
    assert_ignored(plan_push(payload, registered("Codertocat/Hello-World"), DEFAULT_BUILDS))


def test_tag_push_is_built_when_configured_and_never_deploys() -> None:
    payload = example("push-tag")
    plan = plan_push(payload, registered("Codertocat/Hello-World"), TAG_BUILDS)
    request = only_request(plan)
    assert request.sha == payload["after"]
    assert request.ref == "refs/tags/simple-tag"
    assert request.job is Job.TEST
    assert request.deploy_after_test is False


@pytest.mark.parametrize("deploy_branch", [None, "v1.0"])
def test_tag_named_like_the_deploy_branch_does_not_deploy(deploy_branch: str | None) -> None:
    # The tag's name equals the deploy branch (configured, or the default branch): still no deploy.
    payload = push_payload(REPOSITORY, SHA, tag="v1.0", default_branch="v1.0")
    lookup = registered(deploy_branch=deploy_branch)
    request = only_request(plan_push(payload, lookup, TAG_BUILDS))
    assert request.ref == "refs/tags/v1.0"
    assert request.deploy_after_test is False


def test_githubs_own_deletion_example_is_ignored() -> None:
    payload = example("push-delete")
    lookup = registered("Codertocat/Hello-World")
    assert_ignored(plan_push(payload, lookup, DEFAULT_BUILDS))
    assert_ignored(plan_push(payload, lookup, TAG_BUILDS))


def test_branch_deletion_is_ignored() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="feature", deleted=True)
    assert payload["after"] == "0" * 40
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


def test_branch_deletion_of_the_deploy_branch_is_ignored() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", default_branch="main", deleted=True)
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


def test_deleted_flag_alone_is_a_deletion() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="feature")
    payload["deleted"] = True
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


def test_all_zero_after_alone_is_a_deletion() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="feature")
    payload["after"] = "0" * 40
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


# --- push: [skip ci] ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "[skip ci]",
        "[ci skip]",
        "Fix a typo [skip ci]",
        "[ci skip] Fix a typo",
        "[SKIP CI] shouting",
        "[Ci Skip] mixed case",
        "[sKiP cI]",
        "Update the docs\n\nNothing to test here. [skip ci]\n",
        "Update the docs\n\n[ci skip]",
    ],
)
def test_skip_marker_in_the_head_commit_message_is_not_built(message: str) -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", message=message)
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


@pytest.mark.parametrize(
    "message",
    ["Skip CI checks in the docs", "skip ci", "ci skip", "[skip]", "[ci]", "(skip ci)"],
)
def test_text_that_is_not_a_skip_marker_is_built(message: str) -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", message=message)
    assert only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).message == message


def test_skip_marker_in_other_commits_of_the_push_does_not_count() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", message="Make it work again")
    earlier = copy.deepcopy(payload["commits"][0])
    earlier.update(id="f" * 40, message="WIP [skip ci]")
    later = copy.deepcopy(payload["commits"][0])
    later.update(id="e" * 40, message="more WIP [ci skip]")
    payload["commits"] = [earlier, later, {**payload["head_commit"]}]
    request = only_request(plan_push(payload, registered(), DEFAULT_BUILDS))
    assert request.sha == SHA


def test_skip_marker_in_the_head_commit_counts_even_when_other_commits_lack_it() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", message="Docs only [ci skip]")
    earlier = copy.deepcopy(payload["commits"][0])
    earlier.update(id="f" * 40, message="Real change")
    payload["commits"] = [earlier, {**payload["head_commit"]}]
    assert_ignored(plan_push(payload, registered(), DEFAULT_BUILDS))


def test_skip_marker_elsewhere_in_the_payload_does_not_count() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main", message="Real change")
    payload["pusher"]["name"] = "[skip ci]"
    payload["head_commit"]["author"]["name"] = "[ci skip]"
    only_request(plan_push(payload, registered(), DEFAULT_BUILDS))


# --- push: malformed payloads -------------------------------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        "abc",
        SHA[:39],
        SHA + "0",
        SHA.upper(),
        "g" * 40,
        " " + SHA[1:],
        SHA[:-1] + "\n",
        "",
        None,
        1234,
        ["0" * 40],
    ],
)
def test_after_that_is_not_a_40_hex_sha_is_a_payload_error(after: Any) -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main")
    payload["after"] = after
    with pytest.raises(PayloadError):
        plan_push(payload, registered(), DEFAULT_BUILDS)


def test_missing_after_is_a_payload_error() -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main")
    del payload["after"]
    with pytest.raises(PayloadError):
        plan_push(payload, registered(), DEFAULT_BUILDS)


BAD_REPOSITORY_NAMES = [
    "../etc",
    "octo/..",
    "../..",
    "octo/a..pp",
    "-octo/app",
    "octo/-app",
    "--upload-pack=touch /tmp/x/app",
    "octo/app/extra",
    "octo/../app",
    "/octo/app",
    "octo/app/",
    "octo//app",
    "octo",
    "",
    "octo/app\n",
    "octo/app\x00",
    "octo/ app",
    "octo/app;id",
    "octo/$(id)",
    "octo\\app",
]


@pytest.mark.parametrize("full_name", BAD_REPOSITORY_NAMES)
def test_invalid_repository_name_in_a_push_is_a_payload_error(full_name: str) -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main")
    payload["repository"]["full_name"] = full_name
    # Even a lookup that would answer for the name must never be asked about it.
    lookup = Lookup(Project(repository=REPOSITORY), Project(repository=full_name))
    with pytest.raises(PayloadError):
        plan_push(payload, lookup, DEFAULT_BUILDS)
    assert lookup.asked == []


def _without_repository(payload: dict[str, Any]) -> None:
    del payload["repository"]


def _repository_as_string(payload: dict[str, Any]) -> None:
    payload["repository"] = REPOSITORY


def _repository_without_full_name(payload: dict[str, Any]) -> None:
    del payload["repository"]["full_name"]


def _full_name_as_number(payload: dict[str, Any]) -> None:
    payload["repository"]["full_name"] = 42


def _full_name_as_list(payload: dict[str, Any]) -> None:
    payload["repository"]["full_name"] = [REPOSITORY]


@pytest.mark.parametrize(
    "damage",
    [
        _without_repository,
        _repository_as_string,
        _repository_without_full_name,
        _full_name_as_number,
        _full_name_as_list,
    ],
)
def test_missing_or_mistyped_repository_is_a_payload_error(
    damage: Callable[[dict[str, Any]], None],
) -> None:
    push = push_payload(REPOSITORY, SHA, branch="main")
    damage(push)
    with pytest.raises(PayloadError):
        plan_push(push, registered(), DEFAULT_BUILDS)
    pull = pull_request_payload(REPOSITORY, SHA)
    damage(pull)
    with pytest.raises(PayloadError):
        plan_pull_request(pull, registered(), FORKS_WITHOUT_SECRETS)


@pytest.mark.parametrize("ref", [None, 7, ["refs/heads/main"]])
def test_missing_or_mistyped_ref_is_a_payload_error(ref: Any) -> None:
    payload = push_payload(REPOSITORY, SHA, branch="main")
    payload["ref"] = ref
    with pytest.raises(PayloadError):
        plan_push(payload, registered(), DEFAULT_BUILDS)


# --- push: hostile branch names -----------------------------------------------------------------

HOSTILE_VALID_BRANCHES = [
    "feature/$(rm${IFS}-rf${IFS}x);echo",
    "a;b|c&d`e`",
    "$HOME",
    'it\'s"quoted"',
    "<script>alert(1)</script>",
    "{a,b}",
    "!x",
    "#x",
    "%s%n%x",
    "x/-rf",
    "ünïcødé/🐙",
    "a" * 200,
]


@pytest.mark.parametrize("branch", HOSTILE_VALID_BRANCHES)
def test_hostile_but_valid_branch_names_are_plain_data(branch: str) -> None:
    assert git_accepts_branch(branch), branch
    payload = push_payload(REPOSITORY, SHA, branch=branch, message="$(reboot) `halt` ; rm -rf /")
    request = only_request(plan_push(payload, registered(), DEFAULT_BUILDS))
    assert request.branch == branch
    assert request.ref == f"refs/heads/{branch}"
    assert request.message == "$(reboot) `halt` ; rm -rf /"
    assert request.deploy_after_test is False


def test_hostile_valid_branch_name_can_be_the_deploy_branch() -> None:
    branch = "release/$(id);x"
    payload = push_payload(REPOSITORY, SHA, branch=branch, default_branch=branch)
    assert only_request(plan_push(payload, registered(), DEFAULT_BUILDS)).deploy_after_test


INVALID_BRANCHES = [
    # The shell-looking example of the brief: it holds a space and a `~`, so it is not a valid ref.
    "feature/$(rm -rf ~);echo",
    "..",
    "a..b",
    "feature/../../etc",
    "-rf",
    "--upload-pack=touch x",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x00b",
    "\x1b[31mred",
    "a\x7fb",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "/a",
    "a/",
    "a//b",
    ".hidden",
    "a.",
    "a.lock",
    "a@{1}",
    # Component rules of `git check-ref-format`: no component starts with `.` or ends with `.lock`.
    "a/.b",
    "a/./b",
    "a/b.lock/c",
    # Lone surrogates (JSON `\ud800` escapes): no git ref, not even encodable as UTF-8.
    "fix-\ud800",
    "fix-\udcff",
]


def _fits_in_argv(name: str) -> bool:
    """argv cannot carry NUL or unencodable text; git could not have such a ref either."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in name


@pytest.mark.parametrize("branch", INVALID_BRANCHES)
def test_invalid_branch_name_is_a_payload_error(branch: str) -> None:
    if _fits_in_argv(branch):
        assert not git_accepts_branch(branch), branch
    payload = push_payload(REPOSITORY, SHA, branch=branch)
    with pytest.raises(PayloadError):
        plan_push(payload, registered(), DEFAULT_BUILDS)


@pytest.mark.parametrize("tag", ["..", "-rf", "v1\n", "a..b", "v 1"])
def test_invalid_tag_name_is_a_payload_error_when_tags_are_built(tag: str) -> None:
    payload = push_payload(REPOSITORY, SHA, tag=tag)
    with pytest.raises(PayloadError):
        plan_push(payload, registered(), TAG_BUILDS)


# --- pull_request -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_githubs_own_pull_request_examples_are_built(action: str) -> None:
    payload = example(f"pull_request-{action}")  # Codertocat/Hello-World, #2, head "changes"
    lookup = registered("Codertocat/Hello-World")
    request = only_request(plan_pull_request(payload, lookup, FORKS_NEVER))
    head = payload["pull_request"]["head"]
    assert request.repository == "Codertocat/Hello-World"
    assert request.sha == head["sha"]
    assert request.ref == "refs/pull/2/head"
    assert request.branch == head["ref"] == "changes"
    assert request.pull_request == 2
    assert request.from_fork is False
    assert request.deploy_after_test is False
    assert request.job is Job.TEST
    assert request.author == payload["pull_request"]["user"]["login"]


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_pull_request_builds_head_sha_with_the_pull_ref(action: str) -> None:
    payload = pull_request_payload(REPOSITORY, SHA, number=17, action=action, branch="feat/x")
    request = only_request(plan_pull_request(payload, registered(), FORKS_NEVER))
    assert request.sha == SHA
    assert request.ref == "refs/pull/17/head"
    assert request.branch == "feat/x"
    assert request.pull_request == 17


def test_githubs_own_closed_example_is_ignored() -> None:
    payload = example("pull_request-closed")
    assert_ignored(plan_pull_request(payload, registered("Codertocat/Hello-World"), FORKS_NEVER))


@pytest.mark.parametrize(
    "action",
    [
        "closed",
        "edited",
        "labeled",
        "unlabeled",
        "assigned",
        "review_requested",
        "converted_to_draft",
        "locked",
        "Opened",
        "",
        None,
        42,
        ["opened"],
        {"opened": True},
    ],
)
def test_other_pull_request_actions_are_ignored(action: Any) -> None:
    payload = pull_request_payload(REPOSITORY, SHA, action="opened")
    payload["action"] = action
    assert_ignored(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))


def test_pull_request_without_action_is_ignored() -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    del payload["action"]
    assert_ignored(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))


def test_pull_request_for_an_unregistered_repository_is_ignored() -> None:
    payload = pull_request_payload("someone/else", SHA)
    assert_ignored(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))


@pytest.mark.parametrize("deploy_branch", [None, "main", "feature"])
def test_pull_requests_never_deploy(deploy_branch: str | None) -> None:
    # Even a pull request whose head branch is the deploy branch (or the default branch, "main").
    lookup = registered(deploy_branch=deploy_branch)
    for branch in ("main", "feature"):
        payload = pull_request_payload(REPOSITORY, SHA, branch=branch)
        request = only_request(plan_pull_request(payload, lookup, FORKS_WITHOUT_SECRETS))
        assert request.deploy_after_test is False
        assert request.job is Job.TEST


def test_fork_pull_request_is_ignored_by_default() -> None:
    payload = pull_request_payload(REPOSITORY, SHA, head_repository="forker/app")
    assert_ignored(plan_pull_request(payload, registered(), FORKS_NEVER))
    assert_ignored(plan_pull_request(payload, registered(), PullRequestSettings()))


def test_fork_pull_request_is_built_from_fork_without_secrets_when_allowed() -> None:
    payload = pull_request_payload(REPOSITORY, SHA, number=5, head_repository="forker/app")
    request = only_request(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))
    assert request.from_fork is True
    assert request.sha == SHA
    assert request.ref == "refs/pull/5/head"
    assert request.repository == REPOSITORY
    assert request.deploy_after_test is False


def test_pull_request_from_a_deleted_fork_is_a_fork() -> None:
    # GitHub sends head.repo = null when the fork has been deleted.
    payload = pull_request_payload(REPOSITORY, SHA)
    payload["pull_request"]["head"]["repo"] = None
    assert_ignored(plan_pull_request(payload, registered(), FORKS_NEVER))
    request = only_request(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))
    assert request.from_fork is True


def test_pull_request_without_head_repo_is_a_fork() -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    del payload["pull_request"]["head"]["repo"]
    assert_ignored(plan_pull_request(payload, registered(), FORKS_NEVER))
    assert only_request(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS)).from_fork


def test_fork_with_the_same_repository_name_under_another_owner_is_a_fork() -> None:
    payload = pull_request_payload(REPOSITORY, SHA, head_repository="octo-fork/app")
    assert_ignored(plan_pull_request(payload, registered(), FORKS_NEVER))


def test_same_repository_in_other_letter_case_is_not_a_fork() -> None:
    # GitHub's owner and repository names are case-insensitive.
    payload = pull_request_payload(REPOSITORY, SHA, head_repository="Octo/App")
    request = only_request(plan_pull_request(payload, registered(), FORKS_NEVER))
    assert request.from_fork is False


@pytest.mark.parametrize("sha", ["abc", SHA.upper(), SHA[:-1], SHA + "a", "", None, 7])
def test_pull_request_head_sha_that_is_not_40_hex_is_a_payload_error(sha: Any) -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    payload["pull_request"]["head"]["sha"] = sha
    with pytest.raises(PayloadError):
        plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS)


@pytest.mark.parametrize("number", [0, -1, "2", None, True, 2.5])
def test_pull_request_number_that_is_not_a_positive_integer_is_a_payload_error(
    number: Any,
) -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    payload["number"] = number
    payload["pull_request"]["number"] = number
    with pytest.raises(PayloadError):
        plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS)


@pytest.mark.parametrize("branch", ["..", "-rf", "a\nb", "a..b", "a b", "a~1", None, 5])
def test_pull_request_invalid_head_branch_is_a_payload_error(branch: Any) -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    payload["pull_request"]["head"]["ref"] = branch
    with pytest.raises(PayloadError):
        plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS)


@pytest.mark.parametrize("branch", HOSTILE_VALID_BRANCHES)
def test_pull_request_hostile_but_valid_head_branch_is_plain_data(branch: str) -> None:
    payload = pull_request_payload(REPOSITORY, SHA, number=3, branch=branch)
    request = only_request(plan_pull_request(payload, registered(), FORKS_WITHOUT_SECRETS))
    assert request.branch == branch
    assert request.ref == "refs/pull/3/head"


@pytest.mark.parametrize("full_name", BAD_REPOSITORY_NAMES)
def test_invalid_repository_name_in_a_pull_request_is_a_payload_error(full_name: str) -> None:
    payload = pull_request_payload(REPOSITORY, SHA)
    payload["repository"]["full_name"] = full_name
    lookup = Lookup(Project(repository=REPOSITORY), Project(repository=full_name))
    with pytest.raises(PayloadError):
        plan_pull_request(payload, lookup, FORKS_WITHOUT_SECRETS)
    assert lookup.asked == []
