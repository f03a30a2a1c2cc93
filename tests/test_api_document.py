"""The API's own description, as the running daemon serves it.

`/api/openapi.json` and `/api/openapi.yaml` are valid OpenAPI 3 documents and say exactly what
the package's `openapi.yaml` says; `/api/docs` is Swagger UI served entirely by Hobotnica (no
CDN): every script, stylesheet and icon the page loads comes from the daemon and answers 200.
"""

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from runner.api import spec
from tests.conftest import Daemon, DaemonFactory, SettingsFactory


@pytest.fixture
async def served(daemon: DaemonFactory, make_settings: SettingsFactory) -> Daemon:
    return await daemon(make_settings())


class _Assets(HTMLParser):
    """The URLs a page loads: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


async def _get(served: Daemon, path: str) -> tuple[int, str, bytes]:
    assert served.client is not None
    response = await served.client.get(path)
    return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_openapi_json_is_a_valid_document_equal_to_the_package_file(served: Daemon) -> None:
    status, content_type, body = await _get(served, "/api/openapi.json")

    assert status == 200
    assert content_type.startswith("application/json")
    document: dict[str, Any] = json.loads(body)
    validate(document)
    assert document == yaml.safe_load(spec.spec_text())
    assert document["openapi"].startswith("3.")


async def test_openapi_yaml_is_the_package_file_itself(served: Daemon) -> None:
    status, content_type, body = await _get(served, "/api/openapi.yaml")

    assert status == 200
    assert "yaml" in content_type
    assert body.decode() == spec.spec_text()
    validate(yaml.safe_load(body))


async def test_docs_page_loads_only_assets_hobotnica_serves(served: Daemon) -> None:
    status, content_type, body = await _get(served, "/api/docs")

    assert status == 200
    assert content_type.startswith("text/html")
    page = body.decode()
    assert re.search(r"https?://", page) is None, "the docs page refers to an external URL"
    assets = _Assets()
    assets.feed(page)
    scripts = [url for url in assets.urls if url.endswith(".js")]
    styles = [url for url in assets.urls if url.endswith(".css")]
    assert scripts and styles
    for url in assets.urls:
        assert url.startswith("/"), url
        asset_status, _, asset = await _get(served, url)
        assert asset_status == 200, url
        assert asset, url


async def test_docs_own_script_loads_the_served_document_and_nothing_external(
    served: Daemon,
) -> None:
    _, _, page = await _get(served, "/api/docs")
    assets = _Assets()
    assets.feed(page.decode())
    own = [url for url in assets.urls if url.endswith(".js") and "/static/" not in url]

    (script_url,) = own
    _, _, script = await _get(served, script_url)

    assert '"/api/openapi.json"' in script.decode()
    assert re.search(r"https?://", script.decode()) is None


async def test_an_asset_outside_the_allowlist_is_not_served(served: Daemon) -> None:
    # Files that sit beside the allowed ones in the bundle, and a name that climbs out of it.
    for path in (
        "/api/docs/static/index.html",
        "/api/docs/static/swagger-initializer.js",
        "/api/docs/static/..%2F__init__.py",
    ):
        status, _, _ = await _get(served, path)
        assert status == 404, path
