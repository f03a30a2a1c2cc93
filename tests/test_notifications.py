"""Notifications: a branch's test going red or green, a failed deploy, told to a Slack-style
webhook and a signed JSON webhook (real HTTP receivers on loopback), durably: a receiver that
is down gets it later, once, and a restart in between loses nothing and repeats nothing."""

import asyncio
import dataclasses
import email
import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from runner.core.models import BuildRequest, BuildState, Job
from runner.core.notification_settings import NotificationSettings
from runner.reporting.notification_messages import BuildNews, slack_message
from runner.scheduling.rules import notification_for
from runner.store.projects import ProjectDirectory
from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api_world import REPOSITORY, start_world
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.webhooks import push_payload

HOOK_SECRET = "notification-secret-0123"
PASSING = makefile(test="@echo all good", deploy="@echo deployed")
FAILING = makefile(test="@echo compiling\n@echo 'src/app.c:3: error: expected ;' >&2\n@exit 1")
WAIT = 20.0


class Receiver:
    """An HTTP receiver on loopback that records what it is sent; it can answer 500 a while."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.failing: set[str] = set()
        self.url = ""
        self._arrived = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{name}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.received.setdefault(name, []).append((dict(request.headers), await request.read()))
        self._arrived.set()
        return web.Response(status=500 if name in self.failing else 200)

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received.get(name, [])]

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not check():
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    receiver.url = str(server.make_url("")).rstrip("/")
    return receiver


def notifying(make_settings: SettingsFactory, receiver: Receiver, **project: Any) -> Any:
    settings = make_settings([{"repository": "octo/app", **project}])
    return dataclasses.replace(
        settings,
        notifications=NotificationSettings(
            slack_url=f"{receiver.url}/slack",
            webhook_url=f"{receiver.url}/hook",
            webhook_secret=HOOK_SECRET,
        ),
    )


async def push(d: Any, fake_github: FakeGitHub, sha: str, n: int) -> None:
    await d.deliver("push", push_payload("octo/app", sha, pushed_at=1_700_000_000 + n))
    await fake_github.wait_final(sha)


async def test_a_branch_going_red_then_green_is_told_once_each_signed_with_the_log(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    receiver: Receiver,
) -> None:
    d = await daemon(notifying(make_settings, receiver))
    green = remote.commit({"Makefile": PASSING}, branch="main")
    await push(d, fake_github, green, 1)
    red = remote.commit({"Makefile": FAILING}, branch="main")
    await push(d, fake_github, red, 2)

    await receiver.until(lambda: len(receiver.bodies("slack")) == len(receiver.bodies("hook")) == 1)
    [(headers, raw)] = receiver.received["hook"]
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Hobotnica-Signature-256"] == expected
    told = json.loads(raw)
    assert (told["event"], told["repository"], told["branch"], told["sha"]) == (
        "failed",
        "octo/app",
        "main",
        red,
    )
    assert told["headline"] == "octo/app main: make test failed"
    assert told["state"] == "failure" and told["description"].startswith("make test failed")
    assert told["author"] and told["duration_s"] is not None
    assert told["build_url"].endswith(f"/builds/{told['build_id']}")
    assert "src/app.c:3: error: expected ;" in told["log_tail"]
    assert not any(line.startswith("[hobotnica]") for line in told["log_tail"])  # the build's own
    [slack] = receiver.bodies("slack")
    assert "*octo/app main: make test failed*" in slack["text"]
    assert f"|build #{told['build_id']}>" in slack["text"]

    fixed = remote.commit({"Makefile": PASSING + "\n"}, branch="main")
    await push(d, fake_github, fixed, 3)
    await receiver.until(lambda: len(receiver.bodies("hook")) == 2)
    assert receiver.bodies("hook")[1]["event"] == "fixed"
    await receiver.until(lambda: len(receiver.bodies("slack")) == 2)
    assert "passes again" in receiver.bodies("slack")[1]["text"]
    # Green after green says nothing.
    again = remote.commit({"Makefile": PASSING + "\n\n"}, branch="main")
    await push(d, fake_github, again, 4)
    await d.stop()
    assert len(receiver.bodies("hook")) == 2 and len(receiver.bodies("slack")) == 2


async def test_a_receiver_that_is_down_gets_it_after_a_restart_and_no_channel_twice(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    receiver: Receiver,
) -> None:
    d = await daemon(notifying(make_settings, receiver, deploy_branch="main"))
    green = remote.commit({"Makefile": PASSING}, branch="main")
    await push(d, fake_github, green, 1)
    receiver.failing.add("hook")
    red = remote.commit({"Makefile": FAILING}, branch="main")
    await push(d, fake_github, red, 2)
    await receiver.until(lambda: bool(receiver.received.get("hook")))
    await receiver.until(lambda: len(receiver.bodies("slack")) == 1)

    await d.stop()  # the webhook's receiver still has nothing
    receiver.failing.clear()
    await d.start()
    await receiver.until(lambda: len(receiver.received["hook"]) == 2)  # tried again, and took it
    deliveries = {headers["X-Hobotnica-Delivery"] for headers, _ in receiver.received["hook"]}
    assert len(deliveries) == 1  # the same notification, as the receiver can tell
    await d.stop()
    assert len(receiver.bodies("slack")) == 1  # it had it: never sent again
    assert [body["event"] for body in receiver.bodies("hook")] == ["failed", "failed"]


async def test_a_projects_notify_overrides_the_defaults_key_by_key(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    receiver: Receiver,
) -> None:
    settings = notifying(make_settings, receiver, notify={"slack_url": f"{receiver.url}/team"})
    d = await daemon(settings)
    await push(d, fake_github, remote.commit({"Makefile": PASSING}, branch="main"), 1)
    await push(d, fake_github, remote.commit({"Makefile": FAILING}, branch="main"), 2)
    await receiver.until(lambda: len(receiver.bodies("team")) == len(receiver.bodies("hook")) == 1)
    await d.stop()
    assert "slack" not in receiver.received  # the project's own Slack instead of the default


REQUEST = BuildRequest("octo/app", "a" * 40, "refs/heads/main", "main")
S, F, E = BuildState.SUCCESS, BuildState.FAILURE, BuildState.ERROR


@pytest.mark.parametrize(
    ("request_", "state", "description", "previous", "told"),
    [
        (REQUEST, F, "make test failed (exit 2) after 1 s", S, "failed"),
        (REQUEST, E, "Timed out after 60 s", S, "failed"),
        (REQUEST, S, "make test passed in 1 s", F, "fixed"),
        (REQUEST, S, "make test passed in 1 s", S, None),  # green stays green: quiet
        (REQUEST, F, "make test failed (exit 2) after 1 s", F, None),  # red stays red: quiet
        (REQUEST, F, "make test failed (exit 2) after 1 s", None, None),  # a new branch
        (REQUEST, E, "Cancelled by alice", S, None),  # a person stopped it
        (REQUEST, E, "Superseded by abc1234", S, None),  # a newer push did
        (REQUEST, E, "Stopped: the repository was removed", S, None),
        (REQUEST, E, "Repository is no longer registered", S, None),
        (dataclasses.replace(REQUEST, job=Job.DEPLOY), E, "Not deployed: deploys are off", S, None),
        (
            dataclasses.replace(REQUEST, job=Job.DEPLOY),
            E,
            "Interrupted: daemon restarted",
            S,
            "deploy failed",
        ),
        (
            dataclasses.replace(REQUEST, job=Job.DEPLOY),
            F,
            "make deploy failed",
            None,
            "deploy failed",
        ),
        (dataclasses.replace(REQUEST, job=Job.DEPLOY), F, "make deploy failed", F, "deploy failed"),
        (dataclasses.replace(REQUEST, ref="refs/pull/7/head", pull_request=7), F, "x", S, None),
    ],
)
def test_what_a_builds_end_tells(
    request_: BuildRequest,
    state: BuildState,
    description: str,
    previous: BuildState | None,
    told: str | None,
) -> None:
    assert notification_for(request_, state, description, previous) == told


def test_a_slack_message_never_turns_build_text_into_links_or_mentions() -> None:
    news = BuildNews(
        kind="failed",
        build_id=3,
        build_url="http://127.0.0.1/builds/3",
        repository="octo/app",
        branch="main",
        job="test",
        sha="a" * 40,
        commit_url=None,
        title="<!channel> & <http://x|y> @channel [click](http://evil)",
        author="mallory",
        state="failure",
        description="make test failed",
        duration_s=1.0,
        log_tail="<@U123>\n",
    )
    text = slack_message(news)["text"]
    assert "<!channel>" not in text and "<@U123>" not in text and "<http://x|y>" not in text
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in text
    assert "@channel" not in text and "](http://evil)" not in text  # Mattermost, Rocket.Chat


def test_a_projects_own_webhook_never_gets_the_default_secret() -> None:
    defaults = NotificationSettings(
        slack_url="https://chat.example/a", webhook_url="https://ops/a", webhook_secret="ops-secret"
    )
    theirs = defaults.overridden(NotificationSettings(webhook_url="https://team/b"))
    assert (theirs.webhook_url, theirs.webhook_secret) == ("https://team/b", None)
    assert theirs.slack_url == "https://chat.example/a"  # other keys still come from defaults
    signed = defaults.overridden(
        NotificationSettings(webhook_url="https://team/b", webhook_secret="team")
    )
    assert signed.webhook_secret == "team"


def test_where_notifications_go_is_masked_in_every_build_output(
    make_settings: SettingsFactory, receiver: Receiver
) -> None:
    settings = notifying(make_settings, receiver, notify={"slack_url": "https://chat/T0/B0/XyZ"})
    masker = ProjectDirectory(settings).masker(None)
    text = f"url={receiver.url}/hook secret={HOOK_SECRET} team=https://chat/T0/B0/XyZ"
    masked = masker.mask_text(text)
    assert receiver.url + "/hook" not in masked and HOOK_SECRET not in masked
    assert "XyZ" not in masked


class MailServer:
    """A real SMTP server on loopback (aiosmtpd, in its own thread) that takes a login, and can
    answer `451` (try again later) to the first messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, refuse_first: int = 0) -> None:
        self.messages: list[tuple[str, list[str], str]] = []
        self.logins: list[tuple[str, str]] = []
        self.attempts = 0
        self._refuse = refuse_first
        self._loop = loop
        self._arrived = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        answer = "451 4.3.0 try again later"
        if self.attempts > self._refuse:
            content = envelope.content.decode()
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), content))
            answer = "250 OK"
        self._loop.call_soon_threadsafe(self._arrived.set)  # once recorded
        return answer

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
    ) -> Any:
        self.logins.append((auth.login.decode(), auth.password.decode()))
        return AuthResult(success=True)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not check():
                self._arrived.clear()
                await self._arrived.wait()


async def test_a_failure_is_mailed_over_smtp_with_a_login_after_the_server_asked_to_wait(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
) -> None:
    mail = MailServer(asyncio.get_running_loop(), refuse_first=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        mail,
        hostname="127.0.0.1",
        port=port,
        authenticator=mail.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        settings = dataclasses.replace(
            make_settings([{"repository": "octo/app"}]),
            notifications=NotificationSettings(
                email_to=("team@example.com", "lead@example.com"),
                email_from="ci@example.com",
                smtp_url=f"smtp://ci:pa%20ss@127.0.0.1:{port}",
            ),
        )
        d = await daemon(settings)
        await push(d, fake_github, remote.commit({"Makefile": PASSING}, branch="main"), 1)
        red = remote.commit({"Makefile": FAILING}, branch="main")
        await push(d, fake_github, red, 2)
        await mail.until(lambda: len(mail.messages) == 1)  # after one "451", once
        await d.stop()
    finally:
        controller.stop()

    assert mail.attempts == 2
    [(sender, recipients, content)] = mail.messages
    assert (sender, recipients) == ("ci@example.com", ["team@example.com", "lead@example.com"])
    assert ("ci", "pa ss") in mail.logins  # the URL's user and (decoded) password
    message = email.message_from_string(content)
    assert message["Subject"] == "[Hobotnica] octo/app main: make test failed"
    body = message.get_payload()
    assert "src/app.c:3: error: expected ;" in body and "/builds/" in body and red in body


async def test_a_registered_repositorys_notify_is_set_through_the_api_and_never_shown(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote_root: Path,
    receiver: Receiver,
) -> None:
    hello = make_remote(remote_root, REPOSITORY)
    world = await start_world(fake_github, daemon, make_settings())
    registered = (await world.register_ready()).body
    one = f"/api/repositories/{REPOSITORY}"
    refused = await world.carol.patch(one, {"notify": {"slack_url": "ftp://nowhere"}})
    assert (refused.status, [e["pointer"] for e in refused.body["errors"]]) == (422, ["/notify"])
    secret_url = f"{receiver.url}/slack"
    changed = await world.carol.patch(one, {"notify": {"slack_url": secret_url}})
    assert changed.status == 200 and changed.body["notify"] == ["slack_url"]
    assert secret_url not in json.dumps((await world.carol.get(one)).body)

    async def push(sha: str, n: int) -> None:
        payload = push_payload(REPOSITORY, sha, pushed_at=1_700_000_000 + n)
        url, secret = registered["webhook"]["url"], registered["webhook"]["secret"]
        assert (await world.deliver_to(url, secret, payload))[0] == 202
        await fake_github.wait_final(sha)

    await push(hello.commit({"Makefile": PASSING}), 1)
    await push(hello.commit({"Makefile": FAILING}), 2)
    await receiver.until(lambda: len(receiver.bodies("slack")) == 1)
    assert f"*{REPOSITORY} main: make test failed*" in receiver.bodies("slack")[0]["text"]

    cleared = await world.carol.patch(one, {"notify": None})
    assert cleared.body["notify"] == []
    await world.daemon.stop()
