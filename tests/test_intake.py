"""`POST /webhooks/github` over real HTTP on loopback: the answer codes of DESIGN.md, exactly.

413 (body over 25 MiB) before 401 (bad or missing signature) before 400 (missing GitHub headers,
body not a JSON object); then 202 with the builds created (possibly none), 200 for a duplicate
delivery and for `ping`. A request that is not accepted changes nothing. Nothing answers 5xx.
Where a build is created the test waits for its final status, so no build outlives the test.
"""

import asyncio
import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from runner.intake.handler import MAX_BODY_BYTES
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import example, headers, pull_request_payload, push_payload

REPOSITORY = "octo/app"
# Pushes in these tests go to a branch that is not the deploy branch, so no deploy follows.
BRANCH = "feature"
MiB = 1024 * 1024
UNKNOWN_SHA = "0123456789abcdef0123456789abcdef01234567"


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def commit(remote: Remote) -> str:
    return remote.commit({"Makefile": makefile(test="@echo ok")}, branch=BRANCH)


def signed(body: bytes, event: str = "push", delivery: str | None = None) -> dict[str, str]:
    return headers(body, SECRET, event, delivery)


async def assert_no_build(d: Any, build_id: int = 1) -> None:
    assert d.client is not None
    response = await d.client.get(f"/api/builds/{build_id}")
    assert response.status == 404


async def assert_rejected(
    d: Any, fake_github: FakeGitHub, answer: tuple[int, Any], expected: int
) -> None:
    """Answered `expected`, and nothing changed: no build, no status posted."""
    status, content = answer
    assert status == expected, content
    await assert_no_build(d)
    assert fake_github.statuses == []


async def assert_next_build_is_first(d: Any, fake_github: FakeGitHub, remote: Remote) -> None:
    """A good push now gets build id 1: nothing before it created a build."""
    sha = commit(remote)
    status, answer = await d.deliver("push", push_payload(REPOSITORY, sha, branch=BRANCH))
    assert status == 202, answer
    assert answer["builds"] == [1]
    final = await fake_github.wait_final(sha)
    assert final.state == "success"
    assert final.target_url.endswith("/builds/1")


async def raw_post(d: Any, header_lines: list[bytes], body: bytes = b"") -> tuple[int, bytes]:
    """A hand-written HTTP/1.1 request, for what aiohttp's client will not send."""
    assert d.client is not None
    server = d.client.server
    async with asyncio.timeout(30):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            request = [
                b"POST /webhooks/github HTTP/1.1",
                f"Host: {server.host}:{server.port}".encode(),
                b"Connection: close",
                *header_lines,
                b"",
                b"",
            ]
            writer.write(b"\r\n".join(request) + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            content = await reader.readexactly(length)
        finally:
            writer.close()
    return status, content


def raw_headers(body: bytes, event: bytes = b"push", delivery: bytes = b"raw-1") -> list[bytes]:
    return [
        b"Content-Type: application/json",
        b"User-Agent: GitHub-Hookshot/044aadd",
        b"X-GitHub-Event: " + event,
        b"X-GitHub-Delivery: " + delivery,
        b"X-Hub-Signature-256: "
        + b"sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest().encode(),
        f"Content-Length: {len(body)}".encode(),
    ]


# --- 413 ----------------------------------------------------------------------------------------


async def test_body_over_25_mib_is_413_even_when_signed(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    body = b"{" + b" " * (MAX_BODY_BYTES - 1) + b"}"
    assert len(body) == 25 * MiB + 1
    status, _ = await d.post_raw(body, signed(body))
    assert status == 413
    await assert_no_build(d)
    assert fake_github.statuses == []


async def test_body_over_25_mib_is_413_before_the_signature_is_looked_at(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings())
    body = b"x" * (25 * MiB + 1)
    status, _ = await d.post_raw(body, {"Content-Type": "application/json"})
    assert status == 413


async def test_body_of_exactly_25_mib_is_not_too_large(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    compact = encode(push_payload("someone/else", UNKNOWN_SHA, branch=BRANCH))
    body = compact + b" " * (25 * MiB - len(compact))  # trailing whitespace is valid JSON
    assert len(body) == MAX_BODY_BYTES == 25 * MiB
    status, _ = await d.post_raw(body, {"Content-Type": "application/json"})
    assert status == 401
    status, answer = await d.post_raw(body, signed(body))
    assert status == 202, answer
    assert answer["builds"] == []
    await assert_no_build(d)
    assert fake_github.statuses == []


@pytest.mark.parametrize("claimed", [MAX_BODY_BYTES + 1, 10**12])
async def test_content_length_claiming_over_25_mib_is_413(
    daemon: DaemonFactory, make_settings: SettingsFactory, claimed: int
) -> None:
    d = await daemon(make_settings())
    body = encode(example("ping"))
    lines = [line for line in raw_headers(body, b"ping") if not line.startswith(b"Content-Len")]
    status, _ = await raw_post(d, [*lines, f"Content-Length: {claimed}".encode()], body)
    assert status == 413


async def test_chunked_body_over_25_mib_is_413(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings())
    chunk = b" " * MiB
    # Written by hand: 26 chunks of 1 MiB, no Content-Length, the size known only by reading.
    encoded = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(26)) + b"0\r\n\r\n"
    lines = [b"Content-Type: application/json", b"Transfer-Encoding: chunked"]
    status, _ = await raw_post(d, lines, encoded)
    assert status == 413


# --- 401 ----------------------------------------------------------------------------------------

# How a signed push's headers are spoiled: (body, its good headers) -> the headers sent.
HeaderChange = Callable[[bytes, dict[str, str]], dict[str, str]]


def without_signature(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in hdrs.items() if name != "X-Hub-Signature-256"}


def sha1_only(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
    sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    return {**without_signature(body, hdrs), "X-Hub-Signature": f"sha1={sha1}"}


def signature(template: str) -> HeaderChange:
    """The signature header as `template`: VALID is the good header, TRUNCATED its digest less
    the last digit, UPPERCASE its digest in capitals."""

    def change(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
        digest = hdrs["X-Hub-Signature-256"].removeprefix("sha256=")
        value = (
            template.replace("VALID", f"sha256={digest}")
            .replace("TRUNCATED", digest[:-1])
            .replace("UPPERCASE", digest.upper())
        )
        return {**hdrs, "X-Hub-Signature-256": value}

    return change


def signed_with_another_secret(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
    return headers(body, "It's a Secret to Nobody")


def signature_of_another_body(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
    return {**hdrs, "X-Hub-Signature-256": signed(body + b" ")["X-Hub-Signature-256"]}


MALFORMED_SIGNATURES = [
    "",
    "sha256=",
    "sha256=nothex",
    "sha256=" + "0" * 64,
    "sha1=" + "0" * 40,
    "SHA256=VALID",
    "sha256=TRUNCATED",
    "sha256=UPPERCASE",
    "sha256=VALID,sha256=VALID",
]
NOT_SIGNED: list[Any] = [
    pytest.param(without_signature, id="missing"),
    pytest.param(sha1_only, id="sha1-only"),
    *(pytest.param(signature(t), id=f"malformed:{t or 'empty'}") for t in MALFORMED_SIGNATURES),
    pytest.param(signed_with_another_secret, id="another-secret"),
    pytest.param(signature_of_another_body, id="another-body"),
    *(
        pytest.param(signature("sha256=TRUNCATED" + c), id=f"non-ascii-U+{ord(c):04X}")
        for c in ["é", "٣", "\uff10", "🐙"]
    ),
]


@pytest.mark.parametrize("change", NOT_SIGNED)
async def test_a_push_without_a_valid_signature_is_401_and_changes_nothing(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    change: HeaderChange,
) -> None:
    d = await daemon(make_settings())
    body = encode(push_payload(REPOSITORY, commit(remote), branch=BRANCH))

    answer = await d.post_raw(body, change(body, signed(body)))

    await assert_rejected(d, fake_github, answer, 401)


async def test_non_ascii_signature_header_bytes_are_401(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    body = encode(push_payload(REPOSITORY, sha, branch=BRANCH))
    good = raw_headers(body)
    digest = good[4].removeprefix(b"X-Hub-Signature-256: sha256=")
    lines = [line for line in good if not line.startswith(b"X-Hub-Signature-256")]
    for spoilt in (b"sha256=\xff" + digest[1:], b"sha256=" + digest + b"\xff", b"\xff" * 71):
        answer = await raw_post(d, [*lines, b"X-Hub-Signature-256: " + spoilt], body)
        await assert_rejected(d, fake_github, answer, 401)


async def test_bad_signature_comes_before_missing_headers_and_bad_json(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings())
    assert (await d.post_raw(b"not json", {"X-Hub-Signature-256": "sha256=" + "0" * 64}))[0] == 401
    assert (await d.post_raw(b"[]", {}))[0] == 401
    body = encode(example("ping"))
    hdrs = headers(body, "wrong", "ping")
    del hdrs["X-GitHub-Event"]
    assert (await d.post_raw(body, hdrs))[0] == 401


async def test_rejected_delivery_creates_no_build(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    body = encode(push_payload(REPOSITORY, sha, branch=BRANCH))
    answer = await d.post_raw(body, headers(body, "wrong secret", "push", "rejected-1"))
    await assert_rejected(d, fake_github, answer, 401)
    # A good, different delivery is build 1: the rejected one took no id and posted nothing.
    await assert_next_build_is_first(d, fake_github, remote)
    assert fake_github.for_commit(sha) == []


async def test_rejected_delivery_id_is_not_remembered(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings())
    body = encode(issues_payload())
    status, _ = await d.post_raw(body, headers(body, "wrong secret", "issues", "same-id"))
    assert status == 401
    # The same delivery id, now signed: a first delivery, not a duplicate.
    status, answer = await d.post_raw(body, signed(body, "issues", "same-id"))
    assert status == 202, answer
    assert answer.get("duplicate") is not True
    assert answer["builds"] == []


# --- 400 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param("X-GitHub-Event", None, id="missing-event"),
        pytest.param("X-GitHub-Delivery", None, id="missing-delivery"),
        pytest.param("X-GitHub-Event", "", id="empty-event"),
        pytest.param("X-GitHub-Delivery", "", id="empty-delivery"),
    ],
)
async def test_a_signed_delivery_without_a_github_header_is_400_and_changes_nothing(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    header: str,
    value: str | None,
) -> None:
    d = await daemon(make_settings())
    for event, payload in (
        ("push", push_payload(REPOSITORY, commit(remote), branch=BRANCH)),
        ("ping", example("ping")),
    ):
        body = encode(payload)
        hdrs = signed(body, event)
        if value is None:
            del hdrs[header]
        else:
            hdrs[header] = value

        await assert_rejected(d, fake_github, await d.post_raw(body, hdrs), 400)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b'{"zen": "unterminated',
        b"[]",
        b'[{"zen": "Keep it logically awesome."}]',
        b'"a string"',
        b"42",
        b"null",
        b"true",
        b'{"zen": "\xff"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than any parser should recurse
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
)
async def test_signed_body_that_is_not_a_json_object_is_400(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, body: bytes
) -> None:
    d = await daemon(make_settings())
    for event in ("push", "ping"):
        await assert_rejected(d, fake_github, await d.post_raw(body, signed(body, event)), 400)


async def test_signed_json_with_an_over_long_integer_is_400(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    # Python refuses to convert integers of more than 4300 digits (ValueError, not JSONDecodeError).
    body = b'{"zen": "Keep it logically awesome.", "hook_id": ' + b"1" * 5000 + b"}"
    d = await daemon(make_settings())
    status, _ = await d.post_raw(body, signed(body, "ping"))
    assert status == 400


# --- accepted -----------------------------------------------------------------------------------


async def test_ping_is_200(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    status, answer = await d.deliver("ping", example("ping"), "ping-1")
    assert status == 200, answer
    assert answer.get("builds", []) == []
    await assert_no_build(d)
    assert fake_github.statuses == []


async def test_ping_for_a_registered_repository_is_200(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    payload = example("ping")
    payload["repository"]["full_name"] = REPOSITORY
    d = await daemon(make_settings())
    status, _ = await d.deliver("ping", payload)
    assert status == 200
    await assert_no_build(d)


async def test_push_for_a_registered_repository_is_202_with_one_build(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    status, answer = await d.deliver("push", push_payload(REPOSITORY, sha, branch=BRANCH), "d-1")
    assert status == 202, answer
    assert answer["delivery"] == "d-1"
    assert answer["builds"] == [1]
    assert (await fake_github.wait_final(sha)).state == "success"


async def test_unregistered_repository_is_202_and_creates_nothing(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    for event, payload in (
        ("push", push_payload("someone/else", sha, branch=BRANCH)),
        ("pull_request", pull_request_payload("someone/else", sha)),
    ):
        status, answer = await d.deliver(event, payload)
        assert status == 202, answer
        assert answer["builds"] == []
    await assert_no_build(d)
    assert fake_github.statuses == []
    await assert_next_build_is_first(d, fake_github, remote)


def issues_payload() -> dict[str, Any]:
    """An `issues` "opened" delivery, shaped like GitHub's, for the registered repository."""
    base = example("pull_request-opened")
    repository = copy.deepcopy(base["repository"])
    repository.update(full_name=REPOSITORY, name="app", default_branch="main")
    repository["owner"]["login"] = "octo"
    issue = {
        key: base["pull_request"][key]
        for key in ("url", "id", "node_id", "number", "title", "user", "state", "body")
    }
    issue.update(labels=[], comments=0, locked=False, assignees=[], milestone=None)
    return {"action": "opened", "issue": issue, "repository": repository, "sender": base["sender"]}


async def test_event_not_acted_on_is_202_and_creates_nothing(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    closed = example("pull_request-closed")
    closed["repository"]["full_name"] = REPOSITORY
    closed["pull_request"]["head"]["sha"] = sha
    closed["pull_request"]["head"]["repo"]["full_name"] = REPOSITORY
    deliveries: list[tuple[str, dict[str, Any]]] = [
        ("issues", issues_payload()),
        ("pull_request", closed),
        ("pull_request", pull_request_payload(REPOSITORY, sha, action="labeled")),
        ("push", push_payload(REPOSITORY, sha, branch=BRANCH, message="Docs [skip ci]")),
        ("push", push_payload(REPOSITORY, sha, branch=BRANCH, deleted=True)),
        ("push", push_payload(REPOSITORY, sha, tag="v1.0")),
        ("pull_request", pull_request_payload(REPOSITORY, sha, head_repository="forker/app")),
        ("create", {"ref": "feature", "ref_type": "branch", "repository": closed["repository"]}),
    ]
    for event, payload in deliveries:
        status, answer = await d.deliver(event, payload)
        assert status == 202, (event, answer)
        assert answer["builds"] == [], event
    await assert_no_build(d)
    assert fake_github.statuses == []
    await assert_next_build_is_first(d, fake_github, remote)


async def test_duplicate_delivery_is_200_and_builds_once(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    payload = push_payload(REPOSITORY, sha, branch=BRANCH)
    first = await d.deliver("push", payload, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    second = await d.deliver("push", payload, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert first[0] == 202, first
    assert first[1]["builds"] == [1]
    assert first[1].get("duplicate") is not True
    assert second[0] == 200, second
    assert second[1]["duplicate"] is True
    assert second[1].get("builds", []) == []
    assert (await fake_github.wait_final(sha)).state == "success"
    await assert_no_build(d, 2)
    finals = [post for post in fake_github.for_commit(sha) if post.state != "pending"]
    assert len(finals) == 1


async def test_duplicate_of_an_ignored_delivery_is_200(
    daemon: DaemonFactory, make_settings: SettingsFactory
) -> None:
    d = await daemon(make_settings())
    payload = issues_payload()
    assert (await d.deliver("issues", payload, "issue-1"))[0] == 202
    status, answer = await d.deliver("issues", payload, "issue-1")
    assert status == 200
    assert answer["duplicate"] is True


async def test_duplicate_delivery_id_with_another_body_is_still_a_duplicate(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    assert (await d.deliver("issues", issues_payload(), "reused"))[0] == 202
    status, answer = await d.deliver("push", push_payload(REPOSITORY, sha, branch=BRANCH), "reused")
    assert status == 200
    assert answer["duplicate"] is True
    await assert_no_build(d)
    assert fake_github.statuses == []


# --- hostile but signed input never gets a 5xx --------------------------------------------------


async def test_signed_push_with_an_invalid_repository_name_is_400(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    for name in ("../etc", "-octo/app", "octo/app/extra", "octo/..", "octo/app\n"):
        payload = push_payload(REPOSITORY, UNKNOWN_SHA, branch=BRANCH)
        payload["repository"]["full_name"] = name
        status, _ = await d.deliver("push", payload)
        assert status == 400, name
    await assert_no_build(d)
    assert fake_github.statuses == []


async def test_signed_push_with_malformed_fields_is_400(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    cases: list[tuple[str, Any]] = [
        ("after", "abc"),
        ("after", 5),
        ("ref", None),
        ("ref", "refs/heads/-rf"),
        ("ref", "refs/heads/a..b"),
        ("ref", "refs/heads/a\nb"),
        ("repository", "octo/app"),
        ("repository", None),
    ]
    for key, value in cases:
        payload = push_payload(REPOSITORY, UNKNOWN_SHA, branch=BRANCH)
        payload[key] = value
        status, _ = await d.deliver("push", payload)
        assert status == 400, (key, value)
    pull = pull_request_payload(REPOSITORY, UNKNOWN_SHA)
    pull["pull_request"]["head"]["sha"] = "not a sha"
    assert (await d.deliver("pull_request", pull))[0] == 400
    await assert_no_build(d)
    assert fake_github.statuses == []


async def test_signed_payload_with_odd_types_never_5xx(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    odd: list[tuple[str, dict[str, Any]]] = [
        ("push", {}),
        ("pull_request", {}),
        ("push", {"repository": {"full_name": REPOSITORY}}),
        ("push", {"repository": {"full_name": REPOSITORY}, "ref": "refs/heads/x", "after": []}),
        ("pull_request", {"action": "opened", "repository": {"full_name": REPOSITORY}}),
        ("pull_request", {"action": "opened", "number": 1, "pull_request": []}),
        ("pull_request", {"action": ["opened"], "repository": []}),
        ("issues", {"action": 5}),
        ("installation", {"action": "created"}),
    ]
    for event, payload in odd:
        status, answer = await d.deliver(event, payload)
        assert status in (202, 400), (event, payload, status, answer)
    await assert_no_build(d)
    assert fake_github.statuses == []


async def test_lone_surrogates_in_a_signed_push_never_5xx(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    # Valid JSON (`\ud800` escapes) that decodes to strings UTF-8 cannot encode.
    d = await daemon(make_settings())
    sha = commit(remote)
    payload = push_payload(REPOSITORY, sha, branch=BRANCH, message="Fix \ud800 \udfff")
    payload["head_commit"]["author"]["name"] = "Octo \udcff"
    status, answer = await d.deliver("push", payload)
    assert status in (202, 400), answer
    if status == 202:
        assert answer["builds"] == [1]
        assert (await fake_github.wait_final(sha)).state == "success"


async def test_lone_surrogate_in_a_branch_name_never_5xx(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    sha = commit(remote)
    status, answer = await d.deliver("push", push_payload(REPOSITORY, sha, branch="fix-\ud800"))
    assert status in (202, 400), answer
    if status == 202:
        assert answer["builds"] == [1]
        await fake_github.wait_final(sha)


async def test_non_ascii_bytes_in_other_github_headers_never_5xx(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings())
    body = encode(issues_payload())
    base = raw_headers(body, b"issues", b"raw-ok")
    bad_delivery = [*base[:3], b"X-GitHub-Delivery: d-\xff", *base[4:]]
    bad_event = [*base[:2], b"X-GitHub-Event: iss\xffues", *base[3:]]
    assert (await raw_post(d, bad_delivery, body))[0] == 400
    assert (await raw_post(d, bad_event, body))[0] == 400
    status, content = await raw_post(d, [*base, b"X-GitHub-Hook-ID: 29\xff2430182"], body)
    assert status == 202, content
    assert json.loads(content)["builds"] == []
    await assert_no_build(d)
    assert fake_github.statuses == []
