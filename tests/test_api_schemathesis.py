"""Every API operation, fuzzed by schemathesis against the live daemon, answers as documented.

The daemon (real store, git, make) and the fake GitHub run on loopback in their own thread
(`LiveDaemon`); schemathesis sends its requests from the test's thread. The caller is a user the
fake GitHub knows, with admin access to a registered, ready repository that has a secret, a
finished build, a running one and a queued one. Generated parameters and bodies are steered
toward those part of the time (`flatmap_*` hooks below), so the happy paths (200, 201, 202,
204) are reached as well as the errors.

Checks: no 5xx, the status code and content type are documented for the operation, and the body
matches the documented schema. Bounded and reproducible: `MAX_EXAMPLES` per operation and phase,
no deadline, derandomized with a fixed seed, no example database.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from runner.api import spec
from runner.core.settings import Settings, parse_settings
from tests.conftest import DAEMON_ENVIRONMENT, SECRET, TOKEN
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import make_remote, makefile
from tests.support.live_daemon import LiveDaemon
from tests.test_core_loop import wait_for_file

ALICE_TOKEN = "ghp_schemathesis0123456789abcdefghijklm"
HEADERS = {"Authorization": f"Bearer {ALICE_TOKEN}", "X-GitHub-Username": "alice"}
REPOSITORY = "octo-org/hello"  # registered and ready before the run
SPARE = "octo-org/spare"  # registered (202) and removed (204) by the run itself
SECRET_NAME = "DEPLOY_TOKEN"
MAX_EXAMPLES = 25
MAX_LINE = 400
DEADLINE = 60.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# What the steering hooks aim at, filled in by the `targets` fixture before any case is made.
TARGETS: dict[str, int] = {}


def _settings(tmp: Path, remotes: Path, github_url: str, public_url: str) -> Settings:
    raw = {
        "server": {"host": "127.0.0.1", "port": 8081, "public_url": public_url},
        "github": {
            "api_url": github_url,
            "git_url": remotes.as_uri(),
            "webhook_secret": SECRET,
            "token": TOKEN,
        },
        "storage": {"data_dir": str(tmp / "var")},
        # One build at a time: the blocked build keeps the ones started after it queued.
        "builds": {"kill_grace": 2, "drain_timeout": 10, "concurrency": 1},
        # The build record's own sign-in is the pages' (tests/test_pages_*); here it is open.
        "ui": {"public": True},
        "api": {"allowed_owners": ["octo-org"]},
        "projects": [],
    }
    return parse_settings(raw, DAEMON_ENVIRONMENT, base_dir=tmp)


def _api(method: str, url: str, body: Any = None) -> requests.Response:
    return requests.request(method, url, json=body, headers=HEADERS, timeout=30)


def _until(url: str, done: Any) -> dict[str, Any]:
    """GET `url` until `done(answer)`, or the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer: dict[str, Any] = _api("GET", url).json()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)  # polling a condition, with a deadline


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release") / "release"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, release: Path) -> Iterator[LiveDaemon]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    remotes = tmp / "remotes"
    passing = makefile(test="@echo testing", deploy="@echo deploying")
    hello = make_remote(remotes, REPOSITORY)
    hello.commit({"Makefile": passing})
    hello.commit({"Makefile": makefile(test=wait_for_file(release))}, branch="slow")
    make_remote(remotes, SPARE).commit({"Makefile": passing})
    fake = FakeGitHub()
    fake.add_user(ALICE_TOKEN, "alice")
    fake.grant("alice", REPOSITORY, "ADMIN")
    fake.grant("alice", SPARE, "ADMIN")
    fake.org_admins["octo-org"] = {"alice"}
    daemon = LiveDaemon(fake, lambda github, public: _settings(tmp, remotes, github, public))
    daemon.start()
    try:
        yield daemon
    finally:
        release.touch()  # the blocked build ends, so the daemon stops without waiting for it
        daemon.stop()


@pytest.fixture(scope="module")
def targets(live: LiveDaemon) -> None:
    """REPOSITORY registered and ready, with a secret, and a finished, a running (on the `slow`
    branch, until `release` exists) and a queued build."""
    owner, name = REPOSITORY.split("/")
    registered = _api("POST", f"{live.url}/api/repositories", {"owner": owner, "name": name})
    assert registered.status_code == 202, registered.text
    one = f"{live.url}/api/repositories/{REPOSITORY}"
    assert _until(one, lambda r: r["status"] != "cloning")["status"] == "ready"
    put = _api("PUT", f"{one}/secrets/{SECRET_NAME}", {"value": "a-secret-value"})
    assert put.status_code == 201, put.text
    ids = {}
    for kind, ref in (("finished", "main"), ("running", "slow"), ("queued", "main")):
        started = _api("POST", f"{one}/builds", {"job": "test", "ref": ref})
        assert started.status_code == 202, started.text
        ids[kind] = started.json()["id"]
        wanted = {"finished": ("success",), "running": ("running",), "queued": ("queued",)}[kind]
        build = _until(f"{live.url}/api/builds/{ids[kind]}", lambda b, w=wanted: b["state"] in w)
        assert build["state"] in wanted, build
    TARGETS.update(ids)


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20240601,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "auth": {
            "openapi": {
                "githubToken": {"bearer": ALICE_TOKEN},
                "githubUsername": {"api_key": "alice"},
            }
        },
        "request-timeout": 30,
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(spec.spec_dict(), config=CONFIG)


def _operation_id(context: Any) -> str:
    return str(context.operation.definition.raw.get("operationId"))


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
    """Often a repository, secret or build that exists, so handlers get past the 404.

    The steered choice comes first: it is what Hypothesis tries first and shrinks toward.
    """
    if not isinstance(path_parameters, dict) or not path_parameters:
        return st.just(path_parameters)
    known = dict(path_parameters)
    if "name" in known:
        target = SPARE if _operation_id(context) == "removeRepository" else REPOSITORY
        known["owner"], known["name"] = target.split("/")
    elif "owner" in known:
        known["owner"] = REPOSITORY.split("/")[0]
    if "secret" in known:
        known["secret"] = SECRET_NAME
    if "id" in known:
        return st.sampled_from(
            [*({**known, "id": build} for build in TARGETS.values()), path_parameters]
        )
    return st.sampled_from([known, path_parameters])


# Acceptable bodies for the operations whose generated bodies rarely are.
GOOD_BODIES: dict[str, dict[str, Any]] = {
    "registerRepository": dict(zip(("owner", "name"), SPARE.split("/"), strict=True)),
    "startBuild": {"job": "test", "ref": "main"},
    "putRepositoryEnv": {"variables": {"LEVEL": "staging"}},
    "putOwnerEnv": {"variables": {"SHARED": "1"}},
    "putSecret": {"value": "another-secret-value"},
}


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    good = GOOD_BODIES.get(_operation_id(context))
    return st.just(body) if good is None else st.sampled_from([good, body])


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case, live: LiveDaemon, targets: None) -> None:
    try:
        case.call_and_validate(base_url=live.url, checks=CHECKS)
    except FailureGroup as failures:
        # The reproducing curl command quotes the whole body; generated ones reach megabytes.
        lines = [
            line if len(line) <= MAX_LINE else f"{line[:MAX_LINE]}... ({len(line)} characters)"
            for line in failures.message.splitlines()
        ]
        raise FailureGroup(list(failures.exceptions), "\n".join(lines)) from None
