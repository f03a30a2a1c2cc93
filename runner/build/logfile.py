"""A build's log on disk, capped: the first `max_bytes` are kept, the rest is counted and cut.

Output is written as it arrives and never held in memory whole; readers (the page, the API) read
the file while it grows.
"""

from pathlib import Path
from typing import BinaryIO


def log_path(data_dir: Path, build_id: int) -> Path:
    return data_dir / "logs" / f"{build_id}.log"


class BuildLog:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("wb", buffering=0)
        self._max_bytes = max_bytes
        self._kept = 0
        self.cut_bytes = 0

    def write(self, data: bytes) -> None:
        room = self._max_bytes - self._kept
        if room > 0:
            kept = data[:room]
            self._file.write(kept)
            self._kept += len(kept)
        self.cut_bytes += max(0, len(data) - max(room, 0))

    def note(self, line: str) -> None:
        """A line from Hobotnica itself (not from make); never cut."""
        self._file.write(f"[hobotnica] {line}\n".encode())

    def close(self) -> None:
        if self.cut_bytes:
            self.note(f"output cut: {self.cut_bytes} bytes over builds.max_log_bytes not kept")
        self._file.close()
