"""Errors as RFC 9457 problem details: `application/problem+json`, never exception text.

`problem()` builds the response; `ProblemError` lets a handler stop with one. Validation errors
carry one entry per field, worded from the schema (which rule failed), never quoting the value
sent, since a value may be a secret.
"""

import http
from collections.abc import Iterable
from typing import Any, TypedDict

import orjson
from aiohttp import web

CONTENT_TYPE = "application/problem+json"


class FieldError(TypedDict, total=False):
    location: str  # body, path, query, header
    pointer: str  # RFC 6901, within the body
    name: str  # the parameter
    message: str


def problem(
    status: int,
    detail: str = "",
    *,
    errors: Iterable[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    listed = list(errors)
    if listed:
        body["errors"] = listed
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=CONTENT_TYPE, headers=headers
    )


class ProblemError(Exception):
    """Raised by a handler to answer with a problem (the API middleware turns it into one)."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        errors: Iterable[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers

    def response(self) -> web.Response:
        return problem(self.status, self.detail, errors=self.errors, headers=self.headers)


def not_found() -> ProblemError:
    # The same answer whether the thing does not exist or the caller may not see it.
    return ProblemError(404, "not found, or not visible to this token")
