"""Validation of names that arrive from outside (config, webhooks) before they touch a path or argv.

Everything here is pure. A name that fails validation is rejected, never "cleaned up".
"""

import re
from typing import TypeGuard

_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA = re.compile(r"[0-9a-f]{40}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# GitHub's delivery ids are GUIDs; accept any short printable token without path characters.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_EVENT = re.compile(r"[a-z_]{1,64}")
_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def is_repository_name(name: str) -> bool:
    """`owner/name` as GitHub allows it, with no `..` and no leading `-` or `.` in either part."""
    if not _REPOSITORY.fullmatch(name) or ".." in name:
        return False
    owner, repo = name.split("/")
    return not any(part.startswith(("-", ".")) for part in (owner, repo))


def is_sha(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(_SHA.fullmatch(value))


def is_env_name(name: str) -> bool:
    return bool(_ENV_NAME.fullmatch(name))


def is_delivery_id(value: str) -> bool:
    return bool(_DELIVERY_ID.fullmatch(value))


def is_event_name(value: str) -> bool:
    return bool(_EVENT.fullmatch(value))


def is_user_name(name: object) -> TypeGuard[str]:
    """A page user's name (`[ui] users`): safe in a cookie, a log line and a page."""
    return isinstance(name, str) and bool(_USER.fullmatch(name))


def is_branch_name(name: object) -> TypeGuard[str]:
    """A conservative subset of `git check-ref-format --branch`, enough to keep argv and paths safe.

    Hostile but valid branch names (shell metacharacters, unicode) pass: they are only ever stored,
    shown escaped, and put into the build's environment, never interpreted.
    """
    if not isinstance(name, str) or not name or len(name) > 255 or name == "@":
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON
        return False
    if name.startswith("-") or ".." in name or "@{" in name:
        return False
    if any(ord(c) < 0x20 or c in " ~^:?*[\\\x7f" for c in name):
        return False
    return all(
        part and not part.startswith(".") and not part.endswith((".", ".lock"))
        for part in name.split("/")
    )


def short_sha(sha: str) -> str:
    return sha[:7]


def is_node_name(name: str) -> bool:
    """A node's name: a host name, perhaps with a port (it goes in lease owners and labels)."""
    return bool(_NODE.fullmatch(name))
