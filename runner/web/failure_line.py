"""Where a failed build's failure begins in its log, for the page's link to it.

make ends a failed target with `make: *** [Makefile:3: test] Error 1` (`make[2]: ***` inside a
recursive make, which prints first); the first such line is the failure's, and the command's own
output is just above it. Without one (make itself could not start, or the build was stopped),
the last line the build printed is where to look. Lines Hobotnica wrote (`[hobotnica] …`) are
never the failure.
"""

import re

_MAKE_ERROR = re.compile(r"^g?make(?:\[\d+\])?: \*\*\* ")


class FailureLineFinder:
    """Fed the log's lines in order, with their numbers; `line` is where the failure begins."""

    def __init__(self) -> None:
        self._make_error: int | None = None
        self._last_output: int | None = None

    def see(self, number: int, text: str, *, ours: bool) -> None:
        if ours or not text.strip():
            return
        self._last_output = number
        if self._make_error is None and _MAKE_ERROR.match(text):
            self._make_error = number

    @property
    def line(self) -> int | None:
        return self._make_error if self._make_error is not None else self._last_output
