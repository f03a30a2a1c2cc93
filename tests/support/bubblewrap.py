"""Whether the tests that need the bubblewrap sandbox run here.

Forks' pull requests build only in the sandbox, so these tests are the proof that forks get no
secrets and that a build cannot see the daemon. CI installs bubblewrap (`.ci/run`), so there a
sandbox that cannot run fails those tests instead of skipping them: a green CI run must have run
them. On a developer's machine without a usable bwrap they skip, saying why.
"""

import os

import pytest

from runner.executor.sandbox import bubblewrap_problem


def running_in_ci() -> bool:
    """`CI=true`, as GitHub Actions, GitLab CI and most others set it (and `.ci/run` does)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_bubblewrap() -> None:
    """Return if bubblewrap can run sandboxes here; otherwise fail (in CI) or skip the test."""
    problem = bubblewrap_problem()
    if problem is None:
        return
    if running_in_ci():
        pytest.fail(f"CI must run the bubblewrap tests, but {problem}", pytrace=False)
    pytest.skip(f"bubblewrap unusable here: {problem}")
