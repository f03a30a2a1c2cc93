"""The REST API end to end: register → cloning → ready → a push to the repository's own webhook
builds with its owner's and its own variables, and the statuses go with the registrant's token.

GitHub is the fake on loopback (GraphQL viewer/repository, hook creation, statuses); git, make,
SQLite and HTTP are real. Every API answer is checked against the OpenAPI document.
"""

import json
from typing import Any

import pytest

from tests.conftest import PUBLIC_URL, SECRET, Daemon, DaemonFactory, SettingsFactory
from tests.support.api import ApiClient
from tests.support.api_world import wait_for_repository
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.webhooks import headers, push_payload

ALICE_TOKEN = "ghp_alice0123456789abcdefghijklmnopqrstu"
MALLORY_TOKEN = "ghp_mallory0123456789abcdefghijklmnopq"
REPOSITORY = "octo-org/hello"


@pytest.fixture
def hello(remote_root: Any) -> Remote:
    return make_remote(remote_root, REPOSITORY)


@pytest.fixture
async def api_daemon(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> Daemon:
    fake_github.add_user(ALICE_TOKEN, "alice")
    fake_github.add_user(MALLORY_TOKEN, "mallory")
    fake_github.grant("alice", REPOSITORY, "ADMIN")
    fake_github.org_admins["octo-org"] = {"alice"}
    return await daemon(make_settings())


@pytest.fixture
def alice(api_daemon: Daemon) -> ApiClient:
    assert api_daemon.client is not None
    return ApiClient(api_daemon.client, ALICE_TOKEN, "alice")


async def deliver_to(
    api_daemon: Daemon, url: str, secret: str, payload: dict[str, Any]
) -> tuple[int, Any]:
    assert api_daemon.client is not None
    body = json.dumps(payload).encode()
    path = url.removeprefix(PUBLIC_URL)
    response = await api_daemon.client.post(path, data=body, headers=headers(body, secret, "push"))
    return response.status, await response.json()


async def test_register_clone_configure_and_build(
    alice: ApiClient, api_daemon: Daemon, fake_github: FakeGitHub, hello: Remote
) -> None:
    sha = hello.commit(
        {
            "Makefile": makefile(
                test="@echo LEVEL=$$LEVEL DEBUG=$$DEBUG TOKEN=$$DEPLOY_TOKEN",
                deploy="@echo deploying",
            )
        }
    )

    registered = await alice.post(
        "/api/repositories", {"owner": "octo-org", "name": "hello", "jobs": ["test"]}
    )

    assert registered.status == 202, registered.body
    assert registered.body["repository"]["status"] == "cloning"
    assert registered.body["repository"]["registered_by"] == "alice"
    webhook = registered.body["webhook"]
    assert webhook["url"] == registered.body["repository"]["webhook_url"]
    assert webhook["url"].startswith(f"{PUBLIC_URL}/webhooks/")
    # An admin token: Hobotnica created the GitHub hook itself, with the repository's secret.
    assert webhook["hook_created"] is True
    (hook,) = fake_github.hooks.values()
    assert (hook.url, hook.secret, hook.content_type) == (webhook["url"], webhook["secret"], "json")
    assert sorted(hook.events) == ["merge_group", "pull_request", "push"]
    ready = await wait_for_repository(alice, REPOSITORY, "ready")
    assert ready.body["status"] == "ready", ready.body
    assert "secret" not in json.dumps(ready.body).replace("secrets", "")

    owner_env = await alice.put(
        "/api/owners/octo-org/env", {"variables": {"LEVEL": "production", "DEBUG": "0"}}
    )
    assert owner_env.status == 200, owner_env.body
    own_env = await alice.put(f"/api/repositories/{REPOSITORY}/env", {"variables": {"DEBUG": "1"}})
    assert own_env.body == {"variables": {"DEBUG": "1"}}
    secret_value = "s3cr3t-deploy-token-value"
    put = await alice.put(
        f"/api/repositories/{REPOSITORY}/secrets/DEPLOY_TOKEN", {"value": secret_value}
    )
    assert put.status == 201

    status, answer = await deliver_to(
        api_daemon, webhook["url"], webhook["secret"], push_payload(REPOSITORY, sha)
    )

    assert status == 202, answer
    (build_id,) = answer["builds"]
    final = await fake_github.wait_final(sha)
    assert final.state == "success"
    assert final.authorization == f"token {ALICE_TOKEN}"  # the registrant's token
    log = await api_daemon.log(build_id)
    assert "LEVEL=production DEBUG=1 TOKEN=***\n" in log  # owner's, overridden, masked
    assert secret_value not in log
    # jobs: [test] never deploys, even on the default branch.
    assert fake_github.for_commit(sha, "hobotnica/deploy") == []
    listed = await alice.get(f"/api/repositories/{REPOSITORY}/builds")
    assert [b["id"] for b in listed.body["builds"]] == [build_id]


async def test_the_global_secret_does_not_open_a_registered_repository(
    alice: ApiClient, api_daemon: Daemon, fake_github: FakeGitHub, hello: Remote
) -> None:
    sha = hello.commit({"Makefile": makefile(test="@echo hi")})
    registered = await alice.post("/api/repositories", {"owner": "octo-org", "name": "hello"})
    url = registered.body["webhook"]["url"]

    forged = await deliver_to(api_daemon, url, SECRET, push_payload(REPOSITORY, sha))
    via_global = await api_daemon.deliver("push", push_payload(REPOSITORY, sha))

    assert forged[0] == 401
    assert via_global[0] == 202 and via_global[1]["builds"] == []  # not a config project
    assert fake_github.statuses == []
