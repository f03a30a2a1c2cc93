"""Tests that need root (mounts, cgroups, other users): skipped on a developer's machine without
it, with the reason; failed in CI (`CI=true`), which runs as root and must run them."""

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_root(why: str) -> None:
    if os.geteuid() == 0:
        return
    message = f"needs root: this test {why}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
