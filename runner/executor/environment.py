"""The environment a build's `make` sees (DESIGN.md, "Environment of a build").

An allowlist of the daemon's own environment, then Hobotnica's variables, then the project's env,
then its secrets. Nothing else: not the daemon's token or webhook secret, not VIRTUAL_ENV or
PYTHONPATH. Pull requests from forks never get secrets.
"""

from collections.abc import Mapping

from runner.core.links import build_url
from runner.core.models import Build
from runner.core.settings import Project


def build_environment(
    *, inherited: Mapping[str, str], build: Build, project: Project, public_url: str
) -> dict[str, str]:
    request = build.request
    env = dict(inherited)
    env.update(
        CI="true",
        HOBOTNICA="1",
        HOBOTNICA_BUILD_ID=str(build.id),
        HOBOTNICA_BUILD_URL=build_url(public_url, build.id),
        HOBOTNICA_REPOSITORY=request.repository,
        HOBOTNICA_SHA=request.sha,
        HOBOTNICA_REF=request.ref,
        HOBOTNICA_BRANCH=request.branch,
        HOBOTNICA_JOB=request.job.value,
        HOBOTNICA_ATTEMPT=str(build.attempt),
        HOBOTNICA_TRIGGER=request.trigger,
    )
    if request.pull_request is not None:
        env["HOBOTNICA_PULL_REQUEST"] = str(request.pull_request)
    if request.is_merge_group:
        env["HOBOTNICA_MERGE_GROUP"] = "1"
    env.update(project.env)
    if not request.from_fork:
        env.update(project.secrets)
    return env
