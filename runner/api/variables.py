"""Build variables: an owner's (shared by its registered repositories), a repository's own
(overriding the owner's), and a repository's secrets, which can be written but never read back.
"""

from collections.abc import Mapping

from aiohttp import web

from runner.api.context import ApiContext, body, validated
from runner.api.problems import FieldError, ProblemError, not_found
from runner.core.names import is_env_name
from runner.core.setting_checks import MIN_SECRET_LENGTH


def is_reserved(name: str) -> bool:
    return name == "CI" or name.startswith("HOBOTNICA")


class VariableHandlers:
    def __init__(self, context: ApiContext) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        repository = "/api/repositories/{owner}/{name}"
        return [
            web.get(f"{repository}/env", self.repository_env),
            web.put(f"{repository}/env", self.replace_repository_env),
            web.get("/api/owners/{owner}/env", self.owner_env),
            web.put("/api/owners/{owner}/env", self.replace_owner_env),
            web.get(f"{repository}/secrets", self.secret_names),
            web.put(f"{repository}/secrets/{{secret}}", self.put_secret),
            web.delete(f"{repository}/secrets/{{secret}}", self.delete_secret),
        ]

    async def _repository(self, request: web.Request, needed: str) -> str:
        return (await self._context.path_registration(request, needed)).repository

    async def repository_env(self, request: web.Request) -> web.Response:
        scope = await self._repository(request, "READ")
        return await self._env(scope)

    async def replace_repository_env(self, request: web.Request) -> web.Response:
        scope = await self._repository(request, "WRITE")
        await self._context.store.replace_env(scope, _checked_env(request))
        return await self._env(scope)

    async def owner_env(self, request: web.Request) -> web.Response:
        owner = str(validated(request).path["owner"])
        await self._context.auth.owner_admin(request, owner)
        return await self._env(owner)

    async def replace_owner_env(self, request: web.Request) -> web.Response:
        owner = str(validated(request).path["owner"])
        await self._context.auth.owner_admin(request, owner)
        await self._context.store.replace_env(owner, _checked_env(request))
        return await self._env(owner)

    async def _env(self, scope: str) -> web.Response:
        variables = await self._context.store.variables(scope)
        return web.json_response({"variables": dict(variables.env)})

    async def secret_names(self, request: web.Request) -> web.Response:
        scope = await self._repository(request, "READ")
        variables = await self._context.store.variables(scope)
        return web.json_response({"secrets": sorted(variables.secrets)})

    async def put_secret(self, request: web.Request) -> web.Response:
        scope = await self._repository(request, "WRITE")
        name = _secret_name(request)
        value = str(body(request)["value"])
        if len(value) < MIN_SECRET_LENGTH:  # the document says so too; never trust one check
            raise ProblemError(422, f"a secret needs at least {MIN_SECRET_LENGTH} characters")
        if "\0" in value:
            raise ProblemError(422, "a secret cannot hold a NUL character")
        created = await self._context.store.put_secret(scope, name, value)
        return web.Response(status=201 if created else 204)

    async def delete_secret(self, request: web.Request) -> web.Response:
        scope = await self._repository(request, "WRITE")
        name = _secret_name(request)
        if not await self._context.store.delete_secret(scope, name):
            raise not_found()
        return web.Response(status=204)


def _secret_name(request: web.Request) -> str:
    name = str(validated(request).path["secret"])
    if not is_env_name(name) or is_reserved(name):
        raise ProblemError(422, "that name is reserved for Hobotnica")
    return name


def _checked_env(request: web.Request) -> dict[str, str]:
    variables: Mapping[str, object] = body(request)["variables"]
    errors: list[FieldError] = []
    for name in variables:
        pointer = "/variables/" + name.replace("~", "~0").replace("/", "~1")
        if not is_env_name(name):
            errors.append(
                {"location": "body", "pointer": pointer, "message": "not a variable name"}
            )
        elif is_reserved(name):
            errors.append(
                {"location": "body", "pointer": pointer, "message": "reserved for Hobotnica"}
            )
        elif "\0" in str(variables[name]):
            errors.append(
                {"location": "body", "pointer": pointer, "message": "cannot hold a NUL character"}
            )
    if errors:
        raise ProblemError(422, "some variable names cannot be used", errors=errors)
    return {name: str(value) for name, value in variables.items()}
