"""Who this daemon is, among the daemons that may share one store (blue/green).

An owner id is `host/pid/random/node`. The random part tells a restarted daemon from its
predecessor even when the kernel hands it the same pid; the node's name (`server.node_name`)
says which node holds a lease to whoever reads the database. A daemon on the same host can tell
whether another owner is gone (its process no longer runs); for other hosts only lease expiry
tells.
"""

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path


def new_owner_id(node: str) -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}/{node}"


def node_of(owner: str | None) -> str | None:
    """The node named in an owner id (None for ids from before nodes had names)."""
    parts = (owner or "").split("/")
    return parts[3] if len(parts) == 4 else None


def is_gone(owner: str | None, *, me: str) -> bool:
    if owner is None:
        return True
    if owner == me:
        return False
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # not ours to judge; its lease will lapse if it is gone
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # our pid, another token: a predecessor that had our pid
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"hobotnica" not in command


@dataclass(frozen=True)
class Instance:
    """This daemon, as the store's leases name it."""

    owner: str

    @classmethod
    def new(cls, node: str) -> "Instance":
        return cls(new_owner_id(node))

    def is_gone(self, other: str | None) -> bool:
        """Whether the daemon `other` is known to be gone (see the module's doc)."""
        return is_gone(other, me=self.owner)
