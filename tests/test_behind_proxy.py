"""Who the client is and how it came, behind the shipped nginx config: trusted or not.

Real nginx (`nginx/hobotnica.conf`, TLS with a throwaway certificate) in front of the daemon on
loopback. The browser connects from 127.0.0.2, nginx from 127.0.0.1. When nginx is one of
`server.trusted_proxies`, the daemon sees the browser's address and its HTTPS (a signed-in
session's cookie is `Secure`); when it is not, its forwarded headers count for nothing: the
client is nginx and the scheme plain HTTP. An address the browser wrote into its own
`X-Forwarded-For` is never taken.
"""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runner.core.settings import Settings
from tests.conftest import Daemon, DaemonFactory, SettingsFactory
from tests.support.logcapture import daemon_log
from tests.test_blue_green import NGINX, nginx, nginx_conf
from tests.test_daemon_process import free_port
from tests.test_pages_auth import ALICE, PASSWORD

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (.ci/run installs it)"
)

BROWSER = "127.0.0.2"
SPOOFED = "198.51.100.9"

Signer = Callable[[dict[str, str]], Awaitable[tuple[aiohttp.ClientResponse, dict[str, Any]]]]


def trusting(settings: Settings, proxies: tuple[str, ...]) -> Settings:
    server = dataclasses.replace(settings.server, trusted_proxies=proxies)
    return dataclasses.replace(settings, server=server)


@pytest.fixture
async def through_nginx(tmp_path: Path) -> AsyncIterator[Callable[[Daemon], Signer]]:
    """Sign in to a daemon through nginx from the browser's address; the `signed in` line."""
    root = tmp_path / "nginx"
    root.mkdir()
    upstream = root / "upstream.conf"
    https_port = free_port()
    conf = nginx_conf(root, upstream, https_port, free_port())
    started: list[Path] = []

    def sign_in(d: Daemon) -> Signer:
        assert d.client is not None
        upstream.write_text(f"upstream hobotnica {{ server 127.0.0.1:{d.client.port}; }}\n")
        result = nginx(conf)
        assert result.returncode == 0, result.stderr
        started.append(conf)

        async def post(extra: dict[str, str]) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
            form = {"username": "alice", "password": PASSWORD, "next": "/"}
            connector = aiohttp.TCPConnector(local_addr=(BROWSER, 0), ssl=False)
            with daemon_log() as log:
                async with aiohttp.ClientSession(connector=connector) as browser:
                    url = f"https://127.0.0.1:{https_port}/signin"
                    response = await browser.post(
                        url, data=form, headers=extra, allow_redirects=False
                    )
                    await response.read()
            lines = [json.loads(line) for line in log.getvalue().splitlines() if line[:1] == "{"]
            (signed_in,) = [line for line in lines if line["event"] == "signed in"]
            return response, signed_in

        return post

    yield sign_in
    for conf_path in started:
        await asyncio.to_thread(nginx, conf_path, "-s", "quit")


def cookie_is_secure(response: aiohttp.ClientResponse) -> bool:
    (cookie,) = response.cookies.values()
    return bool(cookie["secure"])


async def test_behind_a_trusted_proxy_the_browser_and_its_https_are_seen(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    through_nginx: Callable[[Daemon], Signer],
) -> None:
    settings = make_settings(ui={"users": ALICE})  # http:// public URL: Secure only for HTTPS
    d = await daemon(trusting(settings, ("127.0.0.1",)))
    sign_in = through_nginx(d)

    response, signed_in = await sign_in({})
    assert response.status == 303
    assert signed_in["client"] == BROWSER
    assert cookie_is_secure(response)

    # nginx appends the browser's address to what the browser wrote: that is what counts.
    response, signed_in = await sign_in({"X-Forwarded-For": SPOOFED})
    assert response.status == 303 and signed_in["client"] == BROWSER
    # A header nginx passes on but no proxy could read does not cost the browser its page.
    response, signed_in = await sign_in({"X-Forwarded-For": "unknown"})
    assert response.status == 303 and signed_in["client"] == "127.0.0.1"


async def test_behind_an_untrusted_proxy_its_headers_count_for_nothing(
    daemon: DaemonFactory,
    make_settings: SettingsFactory,
    through_nginx: Callable[[Daemon], Signer],
) -> None:
    settings = make_settings(ui={"users": ALICE})
    d = await daemon(trusting(settings, ("127.0.0.3",)))
    sign_in = through_nginx(d)

    response, signed_in = await sign_in({"X-Forwarded-For": SPOOFED})
    assert response.status == 303
    assert signed_in["client"] == "127.0.0.1"  # nginx itself
    assert not cookie_is_secure(response)  # nginx spoke plain HTTP to the daemon
