"""Checking a request against the API document (openapi-core), and saying what is wrong.

A request the document does not allow is answered 400 (401 when the credentials are missing)
with one problem entry per failing field, worded from the rule that failed, never quoting the
value sent (it may be a secret). Paths the document does not describe (openapi.json, the docs)
and methods a path does not have are left to the router.
"""

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.request.exceptions import (
    ParameterValidationError,
    RequestBodyValidationError,
    SecurityValidationError,
)

from runner.api import spec
from runner.api.auth import HOW_TO_AUTHENTICATE, unauthorized
from runner.api.problems import FieldError, ProblemError
from runner.api.validated import Validated

MAX_API_BODY = 1024 * 1024
# No name in the API (owner, repository, secret) is longer; a longer segment names nothing.
MAX_PATH_SEGMENT = 255


async def validate(request: web.Request) -> Validated | None:
    if request.match_info.http_exception is not None:
        return None  # no route matched (404, or 405 with its Allow): the router answers
    _refuse_hostile_segments(request)
    if (request.content_length or 0) > MAX_API_BODY:
        raise ProblemError(413, "request body larger than 1 MiB")
    body = await request.read() if request.can_read_body else None
    if body is not None and len(body) > MAX_API_BODY:
        raise ProblemError(413, "request body larger than 1 MiB")
    result = spec.openapi().unmarshal_request(AIOHTTPOpenAPIWebRequest(request, body=body))
    errors = list(result.errors)
    if not errors:
        parameters = result.parameters
        return Validated(path=parameters.path, query=parameters.query, body=result.body)
    first = errors[0]
    if isinstance(first, PathNotFound):
        if _documented_route(request):  # a route of the document, but its path no longer is
            raise ProblemError(404, "no such resource")
        return None  # not part of the API document (openapi.json, docs): the router decides
    if isinstance(first, OperationNotFound):
        return None  # the router answers 405 with the path's real methods in Allow
    if any(isinstance(error, SecurityValidationError) for error in errors):
        raise unauthorized(HOW_TO_AUTHENTICATE)
    raise ProblemError(
        400,
        "the request does not match the API document",
        errors=[entry for error in errors for entry in _field_errors(error)],
    )


def _field_errors(error: Exception) -> Iterator[FieldError]:
    if isinstance(error, ParameterValidationError):
        location = str(getattr(error, "location", "") or "parameter")
        name = str(getattr(error, "name", ""))
        schema_errors = list(getattr(error.__cause__, "schema_errors", None) or [])
        if not schema_errors:
            yield {"location": location, "name": name, "message": _parameter_problem(error)}
        for schema_error in schema_errors:
            yield {"location": location, "name": name, "message": _message(schema_error)}
        return
    if isinstance(error, RequestBodyValidationError):
        schema_errors = list(getattr(error.__cause__, "schema_errors", None) or [])
        if not schema_errors:
            # Missing, or not JSON: say which without quoting the body back.
            message = (
                "a JSON body is required"
                if "missing" in type(error).__name__.lower()
                else ("the body is not valid JSON")
            )
            yield {"location": "body", "pointer": "", "message": message}
        for schema_error in schema_errors:
            path = "".join(f"/{_escape(part)}" for part in schema_error.absolute_path)
            yield {"location": "body", "pointer": path, "message": _message(schema_error)}
        return
    yield {"location": "request", "message": "does not match the API document"}


def _message(schema_error: Any) -> str:
    """The failed rule in words, without the value that failed it (it may be a secret)."""
    rule, expected = schema_error.validator, schema_error.validator_value
    if rule in ("required", "additionalProperties"):
        return str(schema_error.message)[:200]  # names the property, never a value
    if rule == "enum":
        return "must be one of: " + ", ".join(str(choice) for choice in expected)
    if rule == "uniqueItems":
        return "must not repeat an item"
    if rule == "nullable":
        return "must not be null"
    templates = {
        "type": "must be of type {}",
        "pattern": "must match {}",
        "minLength": "must be at least {} characters long",
        "maxLength": "must be at most {} characters long",
        "minimum": "must be at least {}",
        "maximum": "must be at most {}",
        "minItems": "must have at least {} items",
        "maxItems": "must have at most {} items",
        "minProperties": "must have at least {} entries",
        "maxProperties": "must have at most {} entries",
        "format": "must be a valid {}",
    }
    template = templates.get(rule)
    return template.format(expected) if template else f"does not satisfy {rule}"


def _parameter_problem(error: Exception) -> str:
    if "Missing" in type(error).__name__:
        return "is required"
    return "cannot be read as the documented type"


def _escape(part: object) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _refuse_hostile_segments(request: web.Request) -> None:
    """404 for a path segment the router decoded into something no name can be.

    aiohttp decodes `%2F` inside a segment to `/` and `%00` to NUL after matching the route, so
    `/api/repositories/octo/a%2fb` reaches the `{owner}/{name}` route with the name `a/b`; the
    document then matches no operation and a handler would run on unvalidated input.
    """
    for value in request.match_info.values():
        if "/" in value or "\0" in value or value in (".", "..") or len(value) > MAX_PATH_SEGMENT:
            raise ProblemError(404, "no such resource")


def _documented_route(request: web.Request) -> bool:
    route = request.match_info.route
    canonical = route.resource.canonical if route.resource is not None else ""
    return canonical in spec.spec_dict().get("paths", {})
