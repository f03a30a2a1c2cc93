"""Payloads shaped like GitHub's own (from @octokit/webhooks-examples), signed like GitHub signs."""

import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).parent.parent / "payloads"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _retarget(payload: dict[str, Any], repository: str, default_branch: str) -> None:
    owner, name = repository.split("/")
    repo = payload["repository"]
    repo.update(full_name=repository, name=name, default_branch=default_branch)
    repo["owner"]["login"] = owner


def push_payload(
    repository: str,
    sha: str,
    *,
    branch: str = "main",
    message: str = "Update the README",
    default_branch: str = "main",
    tag: str | None = None,
    deleted: bool = False,
    pushed_at: int | None = None,
) -> dict[str, Any]:
    payload = copy.deepcopy(example("push-tag" if tag else "push"))
    _retarget(payload, repository, default_branch)
    payload["ref"] = f"refs/tags/{tag}" if tag else f"refs/heads/{branch}"
    if pushed_at is not None:
        payload["repository"]["pushed_at"] = pushed_at
    payload["after"] = "0" * 40 if deleted else sha
    payload["deleted"] = deleted
    if deleted:
        payload["head_commit"] = None
    else:
        payload["head_commit"] = payload.get("head_commit") or {}
        payload["head_commit"].update(id=sha, message=message)
    return payload


def pull_request_payload(
    repository: str,
    sha: str,
    *,
    number: int = 2,
    action: str = "opened",
    branch: str = "feature",
    head_repository: str | None = None,
) -> dict[str, Any]:
    payload = copy.deepcopy(example("pull_request-opened"))
    _retarget(payload, repository, "main")
    payload["action"] = action
    payload["number"] = number
    pull = payload["pull_request"]
    pull["number"] = number
    pull["head"]["sha"] = sha
    pull["head"]["ref"] = branch
    pull["head"]["repo"]["full_name"] = head_repository or repository
    return payload


def headers(
    body: bytes, secret: str, event: str = "push", delivery: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": signature(body, secret),
    }
