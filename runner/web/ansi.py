"""Terminal output → HTML: colours become `<span class>`es, nothing else survives.

The log is build output, and build output is hostile. Every line is split into escape sequences
and text; the text is HTML-escaped, the SGR sequences (`ESC [ … m`: colours, bold, dim, italic,
underline, strike-through, inverse) set the classes of the spans around it, and every other
sequence (cursor movement, OSC titles and hyperlinks, DCS strings, lone or unterminated escapes)
and every other control character is dropped. Class names come from a fixed vocabulary
(`f0`…`f255` foreground, `b0`…`b255` background, `bo` `di` `it` `un` `st`, `fi`/`bi` for inverse on
default colours), so no byte of a log can become markup or an attribute. 24-bit colours are
shown as the nearest of the 256 xterm colours, whose palette `palette_css` writes once.

A carriage return inside a line (progress bars) shows what a terminal would end on: the text
after the last one. The SGR state carries from line to line, as on a terminal; each rendered
line closes its own spans, so lines can be shown on their own (line numbers, anchors, live
appends).
"""

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

# Finds the secrets in a line's visible text: (start, end) of each.
Hidden = Callable[[str], list[tuple[int, int]]]
MASK_TEXT = "***"

_SEQUENCE = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"  # CSI, complete
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (titles, hyperlinks), to BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b\[[0-?]*[ -/]*"  # CSI cut off at the end of the line
    r"|\x1b[ -/]*[0-~]?"  # any other escape, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # 8-bit CSI
)
# C0 and C1 controls but the tab, and DEL; escape sequences are gone by then.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """`text` without terminal escapes and control characters (a check run's Markdown)."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text.replace("\r\n", "\n")))


# The 16 base colours are the theme's (CSS variables); these are xterm's defaults for the rest.
_CUBE = (0, 95, 135, 175, 215, 255)


@dataclass(frozen=True)
class Style:
    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    inverse: bool = False

    def classes(self) -> str:
        fg, bg = (self.bg, self.fg) if self.inverse else (self.fg, self.bg)
        names = []
        if fg is not None:
            names.append(f"f{fg}")
        elif self.inverse:
            names.append("fi")
        if bg is not None:
            names.append(f"b{bg}")
        elif self.inverse:
            names.append("bi")
        for flag, name in (
            (self.bold, "bo"),
            (self.dim, "di"),
            (self.italic, "it"),
            (self.underline, "un"),
            (self.strike, "st"),
        ):
            if flag:
                names.append(name)
        return " ".join(names)


PLAIN = Style()


class AnsiRenderer:
    """Renders lines one after another, carrying the colour state between them."""

    def __init__(self) -> None:
        self.style = PLAIN

    def render_line(self, line: str, hidden: Hidden | None = None) -> str:
        """One line of output (without its newline) as HTML.

        `hidden` finds the secrets in the text as it will show; each becomes `***`. It runs on
        the visible text, after the sequences and control characters are gone, because a secret
        with a colour code or a BEL inside it only comes together there.
        """
        line = line.rstrip("\r")
        *overwritten, shown = line.split("\r")
        for segment in overwritten:  # their text is gone, their colours are not
            for match in _SEQUENCE.finditer(segment):
                self._apply(match)
        pieces: list[tuple[str, str]] = []
        position = 0
        for match in _SEQUENCE.finditer(shown):
            self._collect(pieces, shown[position : match.start()])
            self._apply(match)
            position = match.end()
        self._collect(pieces, shown[position:])
        if hidden is not None:
            pieces = _hide(pieces, hidden("".join(text for _, text in pieces)))
        return "".join(_html(classes, text) for classes, text in pieces)

    def _collect(self, pieces: list[tuple[str, str]], text: str) -> None:
        text = _CONTROL.sub("", text)
        if text:
            pieces.append((self.style.classes(), text))

    def _apply(self, match: re.Match[str]) -> None:
        if match.group("final") == "m":
            self.style = apply_sgr(self.style, match.group("params"))


def _html(classes: str, text: str) -> str:
    escaped = html.escape(text)
    return f'<span class="{classes}">{escaped}</span>' if classes else escaped


def _hide(pieces: list[tuple[str, str]], spans: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """`pieces` (classes, text) with the text inside `spans` replaced by one `***` per span."""
    if not spans:
        return pieces
    result = []
    start = 0
    for classes, text in pieces:
        end = start + len(text)
        cursor = start
        for span_start, span_end in spans:
            if span_end <= cursor or span_start >= end:
                continue
            if span_start > cursor:
                result.append((classes, text[cursor - start : span_start - start]))
            if span_start >= start:  # the mask shows once, in the style where the secret began
                result.append((classes, MASK_TEXT))
            cursor = min(span_end, end)
        if cursor < end:
            result.append((classes, text[cursor - start :]))
        start = end
    return result


def apply_sgr(style: Style, params: str) -> Style:
    """The style after `ESC [ params m`; unknown or malformed codes are ignored."""
    groups = _groups(params)
    index = 0
    while index < len(groups):
        group = groups[index]
        index += 1
        code = group[0]
        if code in (38, 48):
            if len(group) > 1:  # colon form, self-contained: 38:5:N, 38:2:R:G:B, 38:2::R:G:B
                colour = _extended_colour(group[1:], colon=True)
            else:  # semicolon form takes the following parameters: 38;5;N, 38;2;R;G;B
                rest = [g[0] for g in groups[index : index + 4]]
                colour = _extended_colour(rest, colon=False)
                index += 2 if rest[:1] == [5] else 4 if rest[:1] == [2] else 0
            if colour is not None and code == 38:
                style = replace(style, fg=colour)
            elif colour is not None:
                style = replace(style, bg=colour)
            continue
        style = _simple(style, code)
    return style


def _simple(style: Style, code: int) -> Style:
    if code == 0:
        return PLAIN
    flags = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "inverse", 9: "strike"}
    if code in flags:
        return replace(style, **{flags[code]: True})
    if code == 22:
        return replace(style, bold=False, dim=False)
    resets = {23: "italic", 24: "underline", 27: "inverse", 29: "strike"}
    if code in resets:
        return replace(style, **{resets[code]: False})
    if 30 <= code <= 37:
        return replace(style, fg=code - 30)
    if 90 <= code <= 97:
        return replace(style, fg=code - 90 + 8)
    if code == 39:
        return replace(style, fg=None)
    if 40 <= code <= 47:
        return replace(style, bg=code - 40)
    if 100 <= code <= 107:
        return replace(style, bg=code - 100 + 8)
    if code == 49:
        return replace(style, bg=None)
    return style


def _groups(params: str) -> list[list[int]]:
    """`;`-separated parameters, each with its `:` sub-parameters; empty means 0, junk -1."""
    if not params:
        return [[0]]
    return [[_number(part) for part in group.split(":")] for group in params.split(";")]


def _number(part: str) -> int:
    if not part:
        return 0
    return int(part) if len(part) <= 3 and part.isdigit() else -1


def _extended_colour(rest: list[int], *, colon: bool) -> int | None:
    """The colour index of `5;N` or `2;R;G;B` (after a 38 or 48), if well formed."""
    if len(rest) >= 2 and rest[0] == 5:
        return rest[1] if 0 <= rest[1] <= 255 else None
    if rest[:1] == [2]:
        # ITU T.416 puts a colour-space id before R:G:B; colon forms may carry it.
        rgb = rest[2:5] if colon and len(rest) >= 5 else rest[1:4]
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return nearest_xterm_colour(*rgb)
    return None


def nearest_xterm_colour(red: int, green: int, blue: int) -> int:
    """The closest of xterm's 6x6x6 cube and 24 greys (indexes 16-255)."""

    def level(value: int) -> int:
        return min(range(6), key=lambda i: abs(_CUBE[i] - value))

    r, g, b = level(red), level(green), level(blue)
    cube = 16 + 36 * r + 6 * g + b
    cube_rgb = (_CUBE[r], _CUBE[g], _CUBE[b])
    grey_index = min(23, max(0, round(((red + green + blue) / 3 - 8) / 10)))
    grey = 8 + 10 * grey_index

    def distance(rgb: tuple[int, int, int]) -> int:
        return sum((x - y) ** 2 for x, y in zip(rgb, (red, green, blue), strict=True))

    return cube if distance(cube_rgb) <= distance((grey, grey, grey)) else 232 + grey_index


def xterm_rgb(index: int) -> tuple[int, int, int]:
    if index >= 232:
        grey = 8 + 10 * (index - 232)
        return grey, grey, grey
    index -= 16
    return _CUBE[index // 36], _CUBE[index // 6 % 6], _CUBE[index % 6]


def palette_css() -> str:
    """CSS for every class `AnsiRenderer` writes; base colours come from `--ansi-N` variables."""
    rules = []
    for index in range(256):
        if index < 16:
            colour = f"var(--ansi-{index})"
        else:
            colour = "#{:02x}{:02x}{:02x}".format(*xterm_rgb(index))
        rules.append(f".f{index}{{color:{colour}}}.b{index}{{background:{colour}}}")
    rules += [
        ".fi{color:var(--log-bg)}.bi{background:var(--log-fg)}",
        ".bo{font-weight:700}.di{opacity:.7}.it{font-style:italic}",
        ".un{text-decoration:underline}.st{text-decoration:line-through}",
        ".un.st{text-decoration:underline line-through}",
    ]
    return "\n".join(rules) + "\n"
