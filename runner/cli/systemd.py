"""systemd's readiness protocol (`Type=notify`): one datagram to `$NOTIFY_SOCKET`.

https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
Outside systemd (no socket) every call does nothing. The protocol is a single datagram; it is
written here rather than pulled in as a dependency.
"""

import contextlib
import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading "@" and addressed with a leading NUL.
        self._address = "\0" + address[1:] if address.startswith("@") else address

    def notify(self, **fields: str) -> None:
        if not self._address:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # systemd may have gone away meanwhile: then there is nobody to tell.
        with datagram, contextlib.suppress(OSError):
            datagram.sendto(message.encode(), self._address)

    def ready(self, status: str) -> None:
        self.notify(ready="1", status=status, mainpid=str(os.getpid()))

    def stopping(self, status: str) -> None:
        self.notify(stopping="1", status=status)
