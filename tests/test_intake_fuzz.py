"""`POST /webhooks/github` under random and hostile input, over real HTTP on loopback.

The property test fires hypothesis-generated requests (header sets, bodies, signatures) at one
live daemon and checks DESIGN.md's answer rules on every one: never 5xx, 401 without a valid
signature, 400 for a signed request with missing GitHub headers or a body that is not a JSON
object, a `builds` list in every 2xx answer, and no build ever created by an unsigned request.
The other tests cover a trickled body (408), an empty body, and a hostile but valid push that
must build normally without any of its text being run or rendered as markup.
"""

import asyncio
import dataclasses
import hashlib
import hmac
import html
import http.client
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.app import INTAKE
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import pull_request_payload, push_payload, signature

REPOSITORY = "octo/app"
WRONG_SECRET = "not the secret"
HTTP_TIMEOUT = 30.0
# How long the fuzzed builds (all on commits that do not exist) may take to end, together.
SETTLE_TIMEOUT = 60.0
FINAL_STATES = {"success", "failure", "error"}

# --- strategies ---------------------------------------------------------------------------------

# What a client can put in a header value and an HTTP parser must take: visible ASCII, space and
# obs-text (0x80-0xff). Control characters are a protocol error, answered before the app runs.
HEADER_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
# Any code point, lone surrogates included (JSON can carry them as `\ud800` escapes).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
EVENT_NAMES = [
    "push",
    "pull_request",
    "ping",
    "issues",
    "create",
    "delete",
    "check_run",
    "installation",
    "workflow_run",
    "pull_request_review",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "text/plain",
]
# Hypothesis draws the first entries of a list more often: the most telling bad signatures first.
BAD_SIGNATURES = [
    "wrong_secret",
    "other_body",
    "absent",
    "truncated",
    "sha1",
    "legacy_sha1_header_only",
    "random",
]
# Weighted towards a correct signature, so most examples get past the signature check.
SIGNATURE_KINDS = [*["correct"] * 4, *BAD_SIGNATURES]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked with the given relative weights."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


SHAS = weighted(
    # Hypothesis favours small values; numbers keep the null sha (a deleted branch) rare.
    (8, st.integers(1, 2**160 - 1).map(lambda number: f"{number:040x}")),
    (1, st.just("0" * 40)),
    (1, st.text("0123456789abcdefABCDEFg", max_size=44)),
)
BRANCHES = weighted(
    (6, st.sampled_from(["main", "feature", "feat/x", "$(touch${IFS}pwned)", "é/ü"])),
    (1, st.sampled_from(["-rf", "a..b", "@", "x.lock", "a b", "a\nb", ".hidden", "a@{1}"])),
    (1, ANY_TEXT),
)
# The fields the daemon reads, each replaced alone or with one or two others.
PUSH_FIELDS: list[tuple[str, ...]] = [
    ("ref",),
    ("after",),
    ("deleted",),
    ("repository",),
    ("repository", "full_name"),
    ("repository", "default_branch"),
    ("head_commit",),
    ("head_commit", "message"),
    ("head_commit", "author"),
    ("head_commit", "author", "name"),
    ("pusher",),
    ("pusher", "name"),
]
PULL_REQUEST_FIELDS: list[tuple[str, ...]] = [
    ("action",),
    ("number",),
    ("repository",),
    ("repository", "full_name"),
    ("pull_request",),
    ("pull_request", "number"),
    ("pull_request", "head"),
    ("pull_request", "head", "sha"),
    ("pull_request", "head", "ref"),
    ("pull_request", "head", "repo"),
    ("pull_request", "head", "repo", "full_name"),
    ("pull_request", "user"),
    ("pull_request", "user", "login"),
]
DEEP_MARKER = re.compile(rb'"@@deep(\d+)@@"')


@dataclass(frozen=True)
class Deep:
    """A value to be replaced by `depth` nested arrays once the payload is serialised."""

    depth: int


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), ANY_TEXT, st.just("")
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(ANY_TEXT, children, max_size=5),
    ),
    max_leaves=20,
)
FIELD_VALUES = weighted(
    (2, JSON_VALUES),
    (2, st.lists(JSON_VALUES, max_size=3)),
    (2, st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=3)),
    (1, SHAS),
    (1, BRANCHES),
    (1, BRANCHES.map(lambda branch: f"refs/heads/{branch}")),
    (1, BRANCHES.map(lambda branch: f"refs/tags/{branch}")),
    (1, st.sampled_from([REPOSITORY, "OCTO/APP", "octo/app/extra", "../etc", "someone/else"])),
    (1, st.integers(1, 3000).map(Deep)),
)


def encode(value: Any) -> bytes:
    def placeholder(item: object) -> str:
        if isinstance(item, Deep):
            return f"@@deep{item.depth}@@"
        raise TypeError(type(item).__name__)

    body = json.dumps(value, default=placeholder).encode()
    return DEEP_MARKER.sub(lambda m: b"[" * int(m[1]) + b"]" * int(m[1]), body)


def replace_at(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set `payload[path]`, unless an earlier replacement left no mapping on the way."""
    node: Any = payload
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[path[-1]] = value


VALID_BRANCHES = st.sampled_from(["main", "feature", "feat/x", "$(touch${IFS}pwned)", "é/ü"])
VALID_SHAS = st.integers(1, 2**160 - 1).map(lambda number: f"{number:040x}")


@st.composite
def mutated_payloads(draw: st.DrawFn, focused: bool = False) -> tuple[str, bytes, str]:
    """A real push or pull_request payload for `octo/app`, some fields replaced by random JSON.

    Focused: everything else in the payload is what GitHub sends for a build, so the replaced
    fields are what the daemon has to cope with. Otherwise the base payload is odd as well.
    """
    event = draw(st.sampled_from(["push", "pull_request"]))
    if focused:
        sha, branch = draw(VALID_SHAS), draw(VALID_BRANCHES)
    else:
        sha, branch = draw(SHAS), draw(BRANCHES)
    if event == "push":
        payload = push_payload(
            REPOSITORY,
            sha,
            branch=branch,
            message=draw(weighted((5, ANY_TEXT), (1, st.just("Fix [skip ci]")))),
            tag=None if focused else draw(weighted((4, st.none()), (1, BRANCHES))),
        )
        fields = PUSH_FIELDS
    elif focused:
        payload = pull_request_payload(
            REPOSITORY,
            sha,
            number=draw(st.integers(1, 10**6)),
            action=draw(st.sampled_from(["opened", "synchronize", "reopened"])),
            branch=branch,
        )
        fields = PULL_REQUEST_FIELDS
    else:
        payload = pull_request_payload(
            REPOSITORY,
            sha,
            number=draw(st.integers(-2, 10**6)),
            action=draw(st.sampled_from(["opened", "synchronize", "reopened", "closed", "x"])),
            branch=branch,
            head_repository=draw(st.sampled_from([REPOSITORY, None, "fork/app"])),
        )
        fields = PULL_REQUEST_FIELDS
    # Mostly one field at a time, so the rest of the payload is valid and the change is reached.
    count = draw(st.sampled_from([1, 1, 1, 2, 3] if focused else [0, 1, 2, 3]))
    changes = []
    for path in draw(
        st.lists(st.sampled_from(fields), min_size=count, max_size=count, unique=True)
    ):
        value = draw(FIELD_VALUES)
        replace_at(payload, path, value)
        changes.append(f"{'.'.join(path)}={value!r:.200}")
    return event, encode(payload), f"{event} payload, {', '.join(changes) or 'unchanged'}"


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BODIES = weighted(
    (1, st.binary(max_size=2000).map(lambda body: (None, body, "random bytes"))),
    (1, JSON_VALUES.map(lambda value: (None, encode(value), "a JSON value"))),
    (
        1,
        st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=6).map(
            lambda value: (None, encode(value), "a JSON object")
        ),
    ),
    (1, st.integers(1, 100_000).map(lambda d: (None, nested_arrays(d), f"{d} nested arrays"))),
    (4, mutated_payloads()),
)
# Replaced by a delivery id never sent before when the request goes out.
FRESH_DELIVERY = "@fresh@"


@dataclass(frozen=True)
class Case:
    body: bytes
    about: str
    headers: tuple[tuple[str, str], ...]
    event: str | None
    signed: bool
    # The GitHub headers are certainly present and well-formed / certainly missing or malformed.
    headers_valid: bool
    headers_invalid: bool

    def expected_status(self) -> int | None:
        """The answer DESIGN.md fixes for this request, where the case alone decides it."""
        if not self.signed:
            return 401
        if self.headers_invalid:
            return 400
        if self.headers_valid:
            is_object = is_json_object(self.body)
            if is_object is False:
                return 400
            if is_object and self.event == "ping":
                return 200  # a first delivery or a duplicate: 200 either way
        return None

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        return (
            f"Case({self.about}, headers={self.headers!r}, body={body!r} ({len(self.body)} bytes))"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis prints a failing case: the short repr, not the whole body."""
        printer.text(repr(self))


def signature_header(kind: str, body: bytes, noise: str) -> tuple[str, str] | None:
    correct = signature(body, SECRET)
    values = {
        "correct": correct,
        "wrong_secret": signature(body, WRONG_SECRET),
        "other_body": signature(body + b" ", SECRET),
        "random": noise,
        "sha1": "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "truncated": correct[:-1],
    }
    if kind == "absent":
        return None
    if kind == "legacy_sha1_header_only":
        return "X-Hub-Signature", values["sha1"]
    return "X-Hub-Signature-256", values[kind]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Half the requests are a delivery GitHub could send but for a field or two of its payload;
    one in six is such a delivery without a valid signature; the rest has everything random:
    headers, signature and body."""
    mode = draw(st.sampled_from(["focused", "focused", "focused", "unsigned", "any", "any"]))
    if mode != "any":
        return draw(focused_cases(signed=mode == "focused"))
    hinted_event, body, about = draw(BODIES)
    headers: list[tuple[str, str]] = []

    event_kind, event = draw(
        weighted(
            (12 if hinted_event else 0, st.just(("valid", hinted_event))),
            (2, st.sampled_from(EVENT_NAMES).map(lambda name: ("valid", name))),
            (1, st.text(HEADER_TEXT, max_size=40).map(lambda text: ("random", text))),
            (1, st.sampled_from([("invalid", ""), ("invalid", None)])),
        )
    )
    if event is not None:
        headers.append(("X-GitHub-Event", event))

    delivery_kind, delivery = draw(
        weighted(
            (12, st.just(("valid", FRESH_DELIVERY))),
            # Few distinct values: the same id again is a duplicate delivery.
            (
                1,
                st.sampled_from(["a", "0", "3fa85f64-5717-4562-b3fc-2c963f66afa6"]).map(
                    lambda value: ("valid", value)
                ),
            ),
            (1, st.text(HEADER_TEXT, max_size=40).map(lambda text: ("random", text))),
            (1, st.integers(101, 6000).map(lambda size: ("invalid", "d" * size))),
            (1, st.sampled_from([("invalid", ""), ("invalid", None)])),
        )
    )
    if delivery is not None:
        headers.append(("X-GitHub-Delivery", delivery))

    kind = draw(st.sampled_from(SIGNATURE_KINDS))
    signed_header = signature_header(kind, body, draw(st.text(HEADER_TEXT, max_size=80)))
    if signed_header is not None:
        headers.append(signed_header)

    headers += draw(other_headers())
    headers = draw(st.permutations(headers))
    return Case(
        body=body,
        about=about,
        headers=tuple(headers),
        event=event,
        signed=kind == "correct",
        headers_valid=event_kind == "valid" and delivery_kind == "valid",
        headers_invalid="invalid" in (event_kind, delivery_kind),
    )


@st.composite
def focused_cases(draw: st.DrawFn, signed: bool) -> Case:
    event, body, about = draw(mutated_payloads(focused=True))
    headers = [("X-GitHub-Event", event), ("X-GitHub-Delivery", FRESH_DELIVERY)]
    kind = "correct" if signed else draw(st.sampled_from(BAD_SIGNATURES))
    signed_header = signature_header(kind, body, draw(st.text(HEADER_TEXT, max_size=80)))
    if signed_header is not None:
        headers.append(signed_header)
    headers += draw(other_headers())
    return Case(
        body=body,
        about=about,
        headers=tuple(headers),
        event=event,
        signed=signed,
        headers_valid=True,
        headers_invalid=False,
    )


@st.composite
def other_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    hook = draw(
        st.one_of(
            st.none(),
            st.integers(0, 10**25).map(str),
            st.text(HEADER_TEXT, max_size=30),
        )
    )
    if hook is not None:
        headers.append(("X-GitHub-Hook-ID", hook))
    content_type = draw(
        st.one_of(st.none(), st.sampled_from(CONTENT_TYPES), st.text(HEADER_TEXT, max_size=40))
    )
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return headers


# --- a blocking HTTP client for the hypothesis thread -------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def request(
        self, method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> tuple[int, bytes]:
        # http.client straight, not urllib: no proxy from the environment, headers sent as given.
        connection = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def is_json_object(body: bytes) -> bool | None:
    """Whether the body parses to a JSON object; None when nesting depth makes it undecidable here
    (the recursion limit is reached at a different depth in the server's thread)."""
    try:
        return isinstance(json.loads(body), dict)
    except RecursionError:
        return None
    except ValueError:
        return False


def no_file_named(root: Path, name: str) -> bool:
    return not any(path.name == name for path in root.rglob("*"))


async def wait_until_settled(d: Any, build_ids: list[int]) -> list[dict[str, Any]]:
    """Poll until every build is final (bounded): the test leaves nothing queued or running."""
    pending = set(build_ids)
    described: dict[int, dict[str, Any]] = {}
    async with asyncio.timeout(SETTLE_TIMEOUT):
        while True:
            for build_id in sorted(pending):
                build = await d.build(build_id)
                described[build_id] = build
                if build["state"] in FINAL_STATES:
                    pending.discard(build_id)
            if not pending:
                return [described[build_id] for build_id in build_ids]
            await asyncio.sleep(0.1)  # polling for a state, with the deadline above


# --- the property -------------------------------------------------------------------------------


async def test_random_requests_never_5xx_and_only_signed_ones_create_builds(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    remote.commit({"Makefile": makefile(test="@echo ok")})  # a real repository behind the project
    base = make_settings()
    # The fuzzed builds post many statuses; unpaced, they are all sent before the daemon stops.
    github = dataclasses.replace(base.github, statuses_per_minute=60_000)
    d = await daemon(dataclasses.replace(base, github=github))
    assert d.client is not None
    url = urlsplit(str(d.client.make_url("/webhooks/github")))
    assert url.hostname is not None and url.port is not None
    endpoint = Endpoint(url.hostname, url.port)
    created: list[int] = []
    examples = 0

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases())
    def property_holds(case: Case) -> None:
        nonlocal examples
        examples += 1
        fresh = f"fuzz-{examples}"
        sent = tuple(
            (name, fresh if value == FRESH_DELIVERY else value) for name, value in case.headers
        )
        status, content = endpoint.request("POST", url.path, case.body, sent)
        assert status < 500, content
        expected = case.expected_status()
        assert expected is None or status == expected, (status, content)
        if 200 <= status < 300:
            answer = json.loads(content)
            builds = answer["builds"]
            assert isinstance(builds, list), answer
            assert all(type(build_id) is int for build_id in builds), answer
            assert not set(builds) & set(created), (answer, created)
            if status == 200:  # ping or duplicate
                assert builds == [], answer
            created.extend(builds)
        # Nothing but the answers counted so far created a build: the next id does not exist yet.
        probe, _ = endpoint.request("GET", f"/api/builds/{len(created) + 1}")
        assert probe == 404, (len(created), case)

    await asyncio.to_thread(property_holds)
    assert examples >= 300, examples
    assert created, "the fuzzing never got a signed push or pull request accepted"

    # The build ids are exactly 1..n, all created by signed 202 answers.
    assert sorted(created) == list(range(1, len(created) + 1)), created
    assert (await d.client.get(f"/api/builds/{len(created) + 1}")).status == 404
    builds = await wait_until_settled(d, created)
    # Every status posted to GitHub is about one of those builds' commits.
    assert {post.sha for post in fake_github.statuses} <= {build["sha"] for build in builds}
    assert no_file_named(tmp_path, "pwned")


# --- a trickled body ----------------------------------------------------------------------------


async def test_body_arriving_too_slowly_is_408_and_creates_nothing(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    remote.commit({"Makefile": makefile(test="@echo ok")})
    d = await daemon(make_settings())
    assert d.client is not None
    d.client.app[INTAKE].body_timeout = 0.5
    sha = remote.commit({"Makefile": makefile(test="@echo ok")}, branch="feature")
    # What would have come: a push GitHub could send, padded to 1000 bytes of valid JSON.
    push = {"ref": "refs/heads/feature", "after": sha, "repository": {"full_name": REPOSITORY}}
    full = json.dumps(push).encode()
    full = full + b" " * (1000 - len(full))
    assert len(full) == 1000
    server = d.client.server
    assert server.host is not None and server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        request = [
            b"POST /webhooks/github HTTP/1.1",
            f"Host: {server.host}:{server.port}".encode(),
            b"Content-Type: application/json",
            b"X-GitHub-Event: push",
            f"X-GitHub-Delivery: {uuid.uuid4()}".encode(),
            f"X-Hub-Signature-256: {signature(full, SECRET)}".encode(),
            b"Content-Length: 1000",
            b"",
            b"",
        ]
        writer.write(b"\r\n".join(request) + full[:10])
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split(b" ", 2)[1] == b"408", status_line
    assert (await d.client.get("/api/builds/1")).status == 404
    assert fake_github.statuses == []


# --- an empty body ------------------------------------------------------------------------------


async def test_empty_body_is_400_when_signed_and_401_when_not(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub
) -> None:
    d = await daemon(make_settings())
    assert d.client is not None
    base = {"Content-Type": "application/json", "X-GitHub-Delivery": str(uuid.uuid4())}
    for event in ("push", "ping"):
        hdrs = {**base, "X-GitHub-Event": event}
        status, answer = await d.post_raw(
            b"", {**hdrs, "X-Hub-Signature-256": signature(b"", SECRET)}
        )
        assert status == 400, answer
        status, answer = await d.post_raw(b"", hdrs)
        assert status == 401, answer
        wrong = {**hdrs, "X-Hub-Signature-256": signature(b"", WRONG_SECRET)}
        status, answer = await d.post_raw(b"", wrong)
        assert status == 401, answer
    assert (await d.client.get("/api/builds/1")).status == 404
    assert fake_github.statuses == []


# --- hostile but valid input --------------------------------------------------------------------

# `git check-ref-format --branch` accepts it; a shell would run `touch pwned` from it.
HOSTILE_BRANCH = "feat/$(touch${IFS}pwned);echo"
HOSTILE_TITLE = (
    "<script>alert(1)</script> $(touch pwned) `touch pwned`; echo 'q' \"dq\" | cat & "
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 <b>bold</b>"
)
HOSTILE_MESSAGE = HOSTILE_TITLE + "\n\nBody: $(touch${IFS}pwned) `touch pwned` <img src=x>"


async def test_hostile_branch_and_message_build_normally_and_are_not_interpreted(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    fake_github: FakeGitHub,
    remote: Remote,
    tmp_path: Path,
) -> None:
    remote.commit({"Makefile": makefile(test="@echo ok")})
    sha = remote.commit(
        {"Makefile": makefile(test="@echo branch=$$HOBOTNICA_BRANCH")},
        message=HOSTILE_MESSAGE,
        branch=HOSTILE_BRANCH,
    )
    d = await daemon(make_settings())
    payload = push_payload(REPOSITORY, sha, branch=HOSTILE_BRANCH, message=HOSTILE_MESSAGE)
    status, answer = await d.deliver("push", payload)
    assert status == 202, answer
    assert answer["builds"] == [1]
    final = await fake_github.wait_final(sha)
    assert final.state == "success", final

    assert no_file_named(tmp_path, "pwned")
    assert not (Path.cwd() / "pwned").exists()
    assert f"branch={HOSTILE_BRANCH}\n" in await d.log(1)
    build = await d.build(1)
    assert build["branch"] == HOSTILE_BRANCH
    assert build["ref"] == f"refs/heads/{HOSTILE_BRANCH}"
    assert build["message"] == HOSTILE_MESSAGE

    page = await d.page(1)
    # The page's own script is the only one: the message's tag is escaped.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="' + _asset(page) + '">']
    assert "<img" not in page
    assert "<b>" not in page
    commit_line = re.search(r'<span id="commit-title">(.*?)</span>', page, re.DOTALL)
    assert commit_line is not None, page
    shown = commit_line[1]
    assert "<" not in shown and ">" not in shown, shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    # ESC and BEL may be kept as text or stripped; what they surround is shown as text.
    visible = html.unescape(shown).replace("\x1b", "").replace("\x07", "")
    assert "<script>alert(1)</script> $(touch pwned) `touch pwned`; echo 'q' \"dq\"" in visible
    assert "red" in visible
    assert "<b>bold</b>" in visible


def _asset(page: str) -> str:
    found = re.search(r'<script src="(/static/logsearch\.js\?v=[0-9a-f]+)">', page)
    assert found is not None, "the page's find-in-log script"
    return found[1]
