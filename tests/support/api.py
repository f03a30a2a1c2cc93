"""A REST API client for tests that checks every answer against the OpenAPI document.

Each response to a path the document describes is validated with openapi-core (status, content
type, headers, body schema): a handler that answers something the document does not allow fails
the test that saw it.
"""

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.testing import MockRequest, MockResponse

from runner.api import spec


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class ApiClient:
    def __init__(
        self, client: "TestClient[web.Request, web.Application]", token: str, login: str
    ) -> None:
        self.client = client
        self.token = token
        self.login = login

    def as_user(self, token: str, login: str) -> "ApiClient":
        return ApiClient(self.client, token, login)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-GitHub-Username": self.login}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> Answer:
        sent = dict(self.auth_headers() if authenticated else {})
        sent.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        response = await self.client.request(method, path, data=data, params=params, headers=sent)
        raw = await response.read()
        answer_headers = dict(response.headers)
        check_against_document(
            method, path, params or {}, sent, data, response.status, raw, answer_headers
        )
        content_type = response.headers.get("Content-Type", "")
        parsed: Any = raw.decode()
        if "json" in content_type and raw:
            parsed = json.loads(raw)
        return Answer(response.status, parsed, answer_headers)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return await self.call("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return await self.call("PUT", path, body, **kwargs)

    async def patch(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return await self.call("PATCH", path, body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("DELETE", path, **kwargs)


def check_against_document(
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    raw: bytes,
    response_headers: dict[str, str],
) -> None:
    content_type = response_headers.get("Content-Type", "").split(";")[0].strip()
    request = MockRequest(
        "http://localhost",
        method.lower(),
        path,
        args=params,
        headers=headers,
        data=body,
        content_type=headers.get("Content-Type", "application/json"),
    )
    response = MockResponse(
        raw, status_code=status, content_type=content_type, headers=response_headers
    )
    try:
        spec.openapi().validate_response(request, response)
    except PathNotFound:
        return  # not an API path the document describes (openapi.json, docs)
