"""A build's log on disk, capped at `builds.max_log_bytes`: the head and the tail are kept.

The first half of the cap is written straight to the log. What comes after goes round a ring file
of the other half, so the end of the output (where the error usually is) survives however much a
build prints. On close the ring is appended in order, after a marker saying how much was cut.
Nothing is held in memory but one chunk; readers (the page, the API) read the file as it grows.

A full disk does not end the build: output that cannot be written is counted and dropped, and
the log says how much was lost once it can (make's result is what the status reports).
"""

import errno
from pathlib import Path
from typing import BinaryIO

from runner.core.links import ring_path


class BuildLog:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("wb", buffering=0)
        self._head_room = max_bytes - max_bytes // 2
        self._ring_size = max(1, max_bytes // 2)
        self._ring_path = ring_path(path)
        self._ring: BinaryIO | None = None
        self._ring_written = 0  # bytes ever written to the ring; position = written % size
        self.lost_bytes = 0  # output dropped because the disk would not take it

    @property
    def cut_bytes(self) -> int:
        return max(0, self._ring_written - self._ring_size)

    def write(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError as error:
            if error.errno not in _DISK_FULL:
                raise
            self.lost_bytes += len(data)

    def _write(self, data: bytes) -> None:
        if self.lost_bytes:
            self._say_what_was_lost()
        if self._head_room > 0:
            head, data = data[: self._head_room], data[self._head_room :]
            self._file.write(head)
            self._head_room -= len(head)
        if data:
            self._write_ring(data)

    def _write_ring(self, data: bytes) -> None:
        if self._ring is None:
            self._ring = self._ring_path.open("w+b", buffering=0)
        if len(data) > self._ring_size:  # only the last ring's worth can survive
            self._ring_written += len(data) - self._ring_size
            data = data[-self._ring_size :]
        position = self._ring_written % self._ring_size
        first = data[: self._ring_size - position]
        self._ring.seek(position)
        self._ring.write(first)
        if len(first) < len(data):
            self._ring.seek(0)
            self._ring.write(data[len(first) :])
        self._ring_written += len(data)

    def note(self, line: str) -> None:
        """A line from Hobotnica itself (not from make). Written in order once output is capped."""
        self.write(f"[hobotnica] {line}\n".encode())

    def _say_what_was_lost(self) -> None:
        lost, self.lost_bytes = self.lost_bytes, 0
        try:
            self._write(
                f"\n[hobotnica] … {lost} bytes of output lost: the disk was full …\n".encode()
            )
        except OSError:
            self.lost_bytes = lost
            raise

    def close(self) -> None:
        try:
            if self.lost_bytes:
                self._say_what_was_lost()
            if self._ring is not None:
                self._append_ring()
        except OSError as error:
            if error.errno not in _DISK_FULL:
                raise
        finally:
            if self._ring is not None:
                self._ring.close()
                self._ring_path.unlink(missing_ok=True)
            self._file.close()

    def _append_ring(self) -> None:
        assert self._ring is not None
        if self.cut_bytes:
            self._file.write(
                f"\n[hobotnica] … {self.cut_bytes} bytes of output cut here "
                "(builds.max_log_bytes keeps the head and the tail) …\n".encode()
            )
            start = self._ring_written % self._ring_size
            spans = [(start, self._ring_size - start), (0, start)]
        else:
            spans = [(0, self._ring_written)]
        for offset, length in spans:
            self._ring.seek(offset)
            while length > 0:
                chunk = self._ring.read(min(length, 1024 * 1024))
                if not chunk:
                    break
                self._file.write(chunk)
                length -= len(chunk)


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
