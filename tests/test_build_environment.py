"""The environment a build's `make` gets (DESIGN.md, "Environment of a build"): exactly the
allowlist of the daemon's own environment, Hobotnica's variables, the project's env and, unless
the build is a fork's pull request, its secrets. Nothing else.

- `build_environment` as a pure function: pushes, pull requests, and forks' pull requests (no
  secrets), compared as whole dicts; no sandbox needed.
- A real `hobotnica serve` process started with credentials in its own environment: a build's
  `make` reports the environment it was started with (`/proc/<make's pid>/environ`, so what make
  and the shell add themselves is not in it), compared exactly.
"""

from pathlib import Path

from runner.core.models import Build, BuildRequest, BuildState, Job
from runner.core.settings import Project
from runner.executor.environment import build_environment
from tests.conftest import SECRET
from tests.support.daemon_process import DaemonProcess, serve_fake_github
from tests.support.gitrepo import (
    PRINT_MAKES_ENVIRONMENT,
    environment_in_log,
    make_remote,
    makefile,
)

PUBLIC_URL = "https://ci.example.com"
SHA = "9049f1265b7d61be4a8904a9a27120d2064dab3b"
INHERITED = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/var/lib/hobotnica",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "TMPDIR": "/var/tmp",
}
PROJECT = Project(
    repository="octo/app",
    env={"LEVEL": "production"},
    secrets={"COVERALLS_TOKEN": "coveralls-secret-value"},
)


def build_of(request: BuildRequest, build_id: int = 17, attempt: int = 1) -> Build:
    return Build(
        id=build_id,
        request=request,
        state=BuildState.RUNNING,
        description="Running make test",
        delivery_id="d-1",
        received_at=1_700_000_000.0,
        queued_at=1_700_000_000.0,
        started_at=1_700_000_001.0,
        finished_at=None,
        attempt=attempt,
    )


def hobotnica_variables(
    request: BuildRequest, build_id: int = 17, attempt: int = 1
) -> dict[str, str]:
    return {
        "CI": "true",
        "HOBOTNICA": "1",
        "HOBOTNICA_BUILD_ID": str(build_id),
        "HOBOTNICA_BUILD_URL": f"{PUBLIC_URL}/builds/{build_id}",
        "HOBOTNICA_REPOSITORY": request.repository,
        "HOBOTNICA_SHA": request.sha,
        "HOBOTNICA_REF": request.ref,
        "HOBOTNICA_BRANCH": request.branch,
        "HOBOTNICA_JOB": request.job.value,
        "HOBOTNICA_ATTEMPT": str(attempt),
        "HOBOTNICA_TRIGGER": "push" if request.pull_request is None else "pull_request",
    }


def environment(request: BuildRequest, attempt: int = 1) -> dict[str, str]:
    return build_environment(
        inherited=INHERITED,
        build=build_of(request, attempt=attempt),
        project=PROJECT,
        public_url=PUBLIC_URL,
    )


# -- the pure function ---------------------------------------------------------------------


def test_a_push_gets_the_inherited_allowlist_hobotnicas_variables_env_and_secrets() -> None:
    push = BuildRequest("octo/app", SHA, "refs/heads/main", "main", Job.DEPLOY)

    assert environment(push, attempt=2) == {
        **INHERITED,
        **hobotnica_variables(push, attempt=2),
        "LEVEL": "production",
        "COVERALLS_TOKEN": "coveralls-secret-value",
    }


def test_a_pull_request_from_the_same_repository_gets_the_secrets() -> None:
    pull = BuildRequest("octo/app", SHA, "refs/pull/7/head", "topic", pull_request=7)

    assert environment(pull) == {
        **INHERITED,
        **hobotnica_variables(pull),
        "HOBOTNICA_PULL_REQUEST": "7",
        "LEVEL": "production",
        "COVERALLS_TOKEN": "coveralls-secret-value",
    }


def test_a_pull_request_from_a_fork_gets_the_project_env_but_no_secret() -> None:
    fork = BuildRequest(
        "octo/app", SHA, "refs/pull/9/head", "patch-1", pull_request=9, from_fork=True
    )

    assert environment(fork) == {
        **INHERITED,
        **hobotnica_variables(fork),
        "HOBOTNICA_PULL_REQUEST": "9",
        "LEVEL": "production",
    }


def test_the_projects_env_comes_after_the_inherited_allowlist() -> None:
    """DESIGN.md's order: the inherited allowlist, Hobotnica's variables, the project's env."""
    project = Project(repository="octo/app", env={"LANG": "de_DE.UTF-8", "TZ": "Europe/Berlin"})
    push = BuildRequest("octo/app", SHA, "refs/heads/main", "main")

    env = build_environment(
        inherited=INHERITED, build=build_of(push), project=project, public_url=PUBLIC_URL
    )

    assert env == {
        **INHERITED,
        **hobotnica_variables(push),
        "LANG": "de_DE.UTF-8",
        "TZ": "Europe/Berlin",
    }


# -- a real daemon, credentials in its own environment --------------------------------------

# What an operator's shell or unit file may hold beside what builds are allowed: Hobotnica's own
# credentials (read from the environment, DESIGN.md), other services' credentials, and the
# daemon's Python set-up. Every value is unique, so a leak shows wherever it lands in a log.
DAEMON_TOKEN = "ghp_sentinel_daemon_token_5f1e2d3c"
SENTINELS = {
    "HOBOTNICA_GITHUB_TOKEN": DAEMON_TOKEN,
    "HOBOTNICA_WEBHOOK_SECRET": SECRET,  # the config's own secret: pushes are signed with it
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-7a6b5c4d",
    "GITHUB_TOKEN": "ghp_sentinel_other_token_1a2b3c4d",
    "SSH_AUTH_SOCK": "/run/sentinel-agent.sock",
    "VIRTUAL_ENV": "/opt/sentinel-venv",
    "PYTHONPATH": "/opt/sentinel-lib",  # not a directory: harmless to the daemon's Python
    "POETRY_HOME": "/opt/sentinel-poetry",
}


async def test_a_build_gets_exactly_the_allowlist_of_the_daemons_real_environment(
    tmp_path: Path,
) -> None:
    remotes = tmp_path / "remotes"
    remote = make_remote(remotes, "octo/app")
    sha = remote.commit({"Makefile": makefile(test=PRINT_MAKES_ENVIRONMENT)}, branch="feature")
    allowed = {
        "LC_ALL": "C.UTF-8",
        "LC_MESSAGES": "C",
        "TZ": "Europe/Ljubljana",
        "TMPDIR": str(tmp_path),
    }
    project = {
        "repository": "octo/app",
        "env": {"LEVEL": "production"},
        "secrets": {"COVERALLS_TOKEN": "coveralls-secret-value"},
    }
    async with serve_fake_github() as fake:
        daemon = DaemonProcess(
            "environment",
            tmp_path,
            fake=fake,
            git_url=remotes.as_uri(),
            data_dir=tmp_path / "var",
            projects=[project],
            environment={**SENTINELS, **allowed},
        )
        try:
            await daemon.start()
            status, answer = await daemon.push("octo/app", sha, branch="feature")
            assert status == 202, answer
            (build_id,) = answer["builds"]
            assert (await fake.wait_final(sha)).state == "success"
            log = await daemon.log(build_id)
        finally:
            await daemon.close()

    assert environment_in_log(log) == {
        "PATH": daemon.environment["PATH"],
        "HOME": daemon.environment["HOME"],
        "LANG": daemon.environment["LANG"],
        **allowed,
        "CI": "true",
        "HOBOTNICA": "1",
        "HOBOTNICA_BUILD_ID": str(build_id),
        "HOBOTNICA_BUILD_URL": f"{daemon.public_url}/builds/{build_id}",
        "HOBOTNICA_REPOSITORY": "octo/app",
        "HOBOTNICA_SHA": sha,
        "HOBOTNICA_REF": "refs/heads/feature",
        "HOBOTNICA_BRANCH": "feature",
        "HOBOTNICA_JOB": "test",
        "HOBOTNICA_ATTEMPT": "1",
        "HOBOTNICA_TRIGGER": "push",
        "LEVEL": "production",
        "COVERALLS_TOKEN": "***",  # given to the build, masked in its log
    }
    for value in SENTINELS.values():
        assert value not in log
    # The daemon did use its environment's token (statuses), so the sentinel was really read.
    assert {s.authorization for s in fake.statuses} == {f"token {DAEMON_TOKEN}"}
