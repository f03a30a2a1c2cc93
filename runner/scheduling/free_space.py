"""Free space under the data directory: below `storage.min_free` no new build starts.

A build writes its workspace, its log and the store's rows; started on a nearly full disk it
fails for reasons that are not its own, and it takes the last space the store needs to record
what happened. So the scheduler asks `FreeSpace.shortage()` before it claims, and the pages and
`/health` say why builds wait. Reading free space is one `statvfs`, cheap enough for every claim.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.statuses import format_bytes


@dataclass
class FreeSpace:
    path: Path
    minimum: int
    # Why builds wait, as the last check found (None: they do not); read by pages and /health.
    shortage_reason: str | None = field(default=None, init=False)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def shortage(self) -> str | None:
        """Why no build may start now, or None."""
        try:
            free = self.free_bytes()
        except OSError as error:
            self.shortage_reason = f"free space under {self.path} unknown: {error.strerror}"
            return self.shortage_reason
        if free >= self.minimum:
            self.shortage_reason = None
        else:
            self.shortage_reason = (
                f"{format_bytes(free)} free under the data directory, below "
                f"storage.min_free ({format_bytes(self.minimum)})"
            )
        return self.shortage_reason
