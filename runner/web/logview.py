"""The build log as pages show it: numbered, masked, coloured HTML lines read from the file.

The log file only grows while its build runs (the worker writes the head, and appends the cut
marker and the kept tail when it closes the log; see `runner.executor.logfile`), so a byte offset
is a stable position in it, and the live stream resumes from one. A build that runs again after
a daemon was lost starts its log over: readers notice the file got shorter.

Every line is `<div class="l" id="L{n}">` with a `#L{n}` link, its number shown by CSS (so copying
the log copies no numbers), and its text through `runner.web.ansi`. Lines Hobotnica itself wrote
(`[hobotnica] …`, including the cut marker of a capped log) get the class `note`. The text is
masked again on the way out, in case a secret was added to the config after the build ran.

The page shows the last `limit` bytes from the start of a line (or from the middle of one longer
than `MAX_LINE_BYTES`); line numbers count from the
start of the file all the same, so `#L{n}` links stay valid. A live stream sends complete lines;
a line longer than `MAX_LINE_BYTES` without a newline is sent in pieces, each numbered as a line.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runner.core.masking import SecretMasker
from runner.web.ansi import AnsiRenderer, plain
from runner.web.failure_line import FailureLineFinder

MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024
NOTE_PREFIX = "[hobotnica] "


class LineRenderer:
    """Turns log bytes into numbered HTML lines, keeping the colour state between calls."""

    def __init__(self, masker: SecretMasker, next_line: int = 1) -> None:
        self.next_line = next_line
        self._masker = masker
        self._ansi = AnsiRenderer()
        self.failure = FailureLineFinder()

    def render(self, data: bytes, *, final: bool) -> tuple[str, int]:
        """HTML of the complete lines in `data` (all of it when `final`), and the bytes used."""
        used = len(data) if final else data.rfind(b"\n") + 1
        if used == 0 and len(data) >= MAX_LINE_BYTES:
            used = _utf8_boundary(data, MAX_LINE_BYTES)
        if used == 0:
            return "", 0
        text = self._masker.mask(data[:used]).decode("utf-8", errors="replace")
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        return "".join(self._line(line) for line in lines), used

    def _line(self, text: str) -> str:
        number = self.next_line
        self.next_line += 1
        ours = text.startswith(NOTE_PREFIX)
        self.failure.see(number, plain(text), ours=ours)
        kind = "l note" if ours else "l"
        body = self._ansi.render_line(text, self._masker.text_spans)
        return (
            f'<div class="{kind}" id="L{number}"><a class="n" href="#L{number}" '
            f'data-n="{number}"></a><span>{body}</span></div>'
        )


@dataclass(frozen=True)
class LogTail:
    html: str
    skipped: int  # bytes before the first line shown
    end: int  # offset after the last byte shown: where a live stream goes on
    next_line: int  # the number the next line will get
    failure_line: int | None = None  # where a failure would begin, among the lines shown


def read_tail(path: Path, limit: int, masker: SecretMasker, *, final: bool) -> LogTail:
    """The last `limit` bytes of the log from a line start, as HTML (blocking: use a thread)."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return LogTail("", 0, 0, 1)
    with file:
        size = os.fstat(file.fileno()).st_size
        start = max(0, size - limit)
        if start > 0:  # begin at the first whole line, unless that line is a monster
            file.seek(start - 1)  # with the byte before: a line may begin right at `start`
            data = file.read(size - start + 1)
            newline = data.find(b"\n", 0, MAX_LINE_BYTES + 1)
            data, start = (
                (data[newline + 1 :], start + newline) if newline >= 0 else (data[1:], start)
            )
        else:
            data = file.read(size)
        lines_before = _count_newlines(file, start) if start else 0
    renderer = LineRenderer(masker, lines_before + 1)
    html, used = renderer.render(data, final=final)
    return LogTail(html, start, start + used, renderer.next_line, renderer.failure.line)


def line_number_at(path: Path, offset: int) -> int | None:
    """The number of the line starting at `offset`, or None if the log is shorter than that."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size < offset:
                return None
            return _count_newlines(file, offset) + 1
    except FileNotFoundError:
        return None if offset else 1


def _count_newlines(file: BinaryIO, end: int) -> int:
    file.seek(0)
    count, remaining = 0, end
    while remaining > 0:
        chunk = file.read(min(READ_CHUNK, remaining))
        if not chunk:
            break
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count


def _utf8_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below `limit` that does not split a UTF-8 character."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut
