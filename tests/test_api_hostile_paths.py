"""Hostile path segments in the REST API: a clean 404 problem, before any handler runs.

aiohttp decodes `%2F` to `/` and `%00` to NUL inside a path segment after the route matched,
so `/api/repositories/octo/a%2fb` once reached the `{owner}/{name}` handler unvalidated and
answered 500 with a traceback, to anyone, without credentials. This sweeps every API route the
daemon serves, with every method it has, through each hostile segment, signed in and not.
"""

import json
import re
from pathlib import Path

import pytest
from yarl import URL

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.api_world import REPOSITORY, ApiWorld, start_world
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, make_remote, makefile
from tests.support.logcapture import daemon_log

HOSTILE_SEGMENTS = {
    "encoded slash": "a%2fb",
    "encoded upper-case slash": "a%2Fb",
    "encoded NUL": "a%00b",
    "dot-dot": "%2e%2e",
    "over-long": "x" * 300,
}
PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
GOOD_VALUES = {"owner": "octo-org", "name": "hello", "secret": "API_KEY", "id": "1"}


@pytest.fixture
def hello(remote_root: Path) -> Remote:
    remote = make_remote(remote_root, REPOSITORY)
    remote.commit({"Makefile": makefile(test="@echo ok")})
    return remote


@pytest.fixture
async def world(
    fake_github: FakeGitHub, daemon: DaemonFactory, make_settings: SettingsFactory, hello: Remote
) -> ApiWorld:
    world = await start_world(fake_github, daemon, make_settings())
    await world.register_ready()
    return world


def api_routes(world: ApiWorld) -> list[tuple[str, str]]:
    """(method, path template) of every API route with a parameter in its path."""
    assert world.daemon.client is not None
    found = set()
    for route in world.daemon.client.app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/api/") and "{" in canonical and route.method != "HEAD":
            found.add((route.method, canonical))
    return sorted(found)


def hostile_paths(template: str) -> list[tuple[str, str]]:
    """The template with one parameter at a time made hostile, the others plausible."""
    names = PARAMETER.findall(template)
    paths = []
    for target in names:
        for label, segment in HOSTILE_SEGMENTS.items():
            path = PARAMETER.sub(
                lambda m, t=target, s=segment: s if m.group(1) == t else GOOD_VALUES[m.group(1)],
                template,
            )
            paths.append((f"{target}: {label}", path))
    return paths


async def test_every_api_route_answers_hostile_segments_with_a_404_problem(
    world: ApiWorld,
) -> None:
    routes = api_routes(world)
    assert len(routes) >= 12  # every operation with a path parameter, not a silent empty sweep
    client = world.daemon.client
    assert client is not None
    seen = 0
    with daemon_log() as log:
        for method, template in routes:
            for label, path in hostile_paths(template):
                for signed_in in (True, False):
                    headers = world.alice.auth_headers() if signed_in else {}
                    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                    if body is not None:
                        headers["Content-Type"] = "application/json"
                    url = URL(f"{client.make_url('')}".rstrip("/") + path, encoded=True)
                    response = await client.session.request(method, url, headers=headers, data=body)
                    text = await response.text()
                    where = f"{method} {path} ({label}, signed in: {signed_in})"
                    assert response.status in (400, 404), f"{where}: {response.status} {text}"
                    assert response.content_type == "application/problem+json", where
                    assert json.loads(text)["status"] == response.status, where
                    seen += 1
    assert seen >= 100
    logged = log.getvalue()
    assert "Traceback" not in logged
    assert "unhandled API error" not in logged


async def test_a_plain_name_still_reaches_its_handler(world: ApiWorld) -> None:
    # The guard must not turn ordinary names into 404s.
    answer = await world.alice.get(f"/api/repositories/{REPOSITORY}")
    assert answer.status == 200
    assert answer.body["repository"] == REPOSITORY
