"""`runner.web.logview`: numbered, masked HTML lines from a log file, whole or from an offset."""

import html as html_module
import re
from pathlib import Path

from runner.core.masking import SecretMasker
from runner.web.logview import MAX_LINE_BYTES, LineRenderer, line_number_at, read_tail

NO_SECRETS = SecretMasker(())
LINE = re.compile(r'<div class="(l(?: note)?)" id="L(\d+)"><a class="n" href="#L\2" data-n="\2">')


def numbers(html: str) -> list[int]:
    return [int(match[2]) for match in LINE.finditer(html)]


def test_lines_are_numbered_linkable_and_notes_marked() -> None:
    html, used = LineRenderer(NO_SECRETS).render(b"one\n[hobotnica] a note\nthree\n", final=False)

    assert used == len(b"one\n[hobotnica] a note\nthree\n")
    assert numbers(html) == [1, 2, 3]
    assert [match[1] for match in LINE.finditer(html)] == ["l", "l note", "l"]
    assert '<a class="n" href="#L2" data-n="2"></a><span>[hobotnica] a note</span>' in html


def test_a_partial_line_waits_for_its_newline_unless_the_log_is_final() -> None:
    renderer = LineRenderer(NO_SECRETS)

    html, used = renderer.render(b"done\nhalf a li", final=False)
    assert (numbers(html), used) == ([1], 5)
    html, used = renderer.render(b"half a line", final=True)
    assert (numbers(html), used) == ([2], 11)
    assert "half a line" in html


def test_a_line_longer_than_the_limit_is_sent_in_pieces_on_a_character_boundary() -> None:
    data = "é".encode() * MAX_LINE_BYTES  # two bytes each, no newline

    html, used = LineRenderer(NO_SECRETS).render(data, final=False)

    assert used in (MAX_LINE_BYTES, MAX_LINE_BYTES - 1)
    assert used % 2 == 0  # never half a character
    assert "\ufffd" not in html


def test_secrets_are_masked_again_on_the_way_out() -> None:
    masker = SecretMasker(["hunter2-secret"])

    html, _ = LineRenderer(masker).render(b"token=hunter2-secret\n", final=True)

    assert "hunter2" not in html and "token=***" in html


def test_the_page_shows_the_tail_from_a_line_start_numbered_from_the_top(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"".join(b"line %d\n" % n for n in range(1, 1001)))

    tail = read_tail(path, 100, NO_SECRETS, final=True)

    shown = numbers(tail.html)
    assert shown[-1] == 1000 and shown == list(range(shown[0], 1001))
    assert f"line {shown[0]}<" in tail.html
    assert tail.skipped == path.read_bytes().index(b"line %d\n" % shown[0])
    assert tail.end == path.stat().st_size and tail.next_line == 1001
    assert line_number_at(path, tail.skipped) == shown[0]


def test_a_running_builds_tail_stops_before_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"one\ntwo\nthr")

    tail = read_tail(path, 1024, NO_SECRETS, final=False)

    assert numbers(tail.html) == [1, 2]
    assert (tail.end, tail.next_line) == (8, 3)


def test_a_monster_line_at_the_cut_is_shown_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"first\n" + b"a" * 300_000 + b"\nlast\n")

    tail = read_tail(path, 100_000, NO_SECRETS, final=True)

    assert "a" * 10_000 in tail.html
    assert numbers(tail.html) == [2, 3]


def test_missing_log_and_offsets_beyond_it(tmp_path: Path) -> None:
    path = tmp_path / "none.log"

    assert read_tail(path, 100, NO_SECRETS, final=False).html == ""
    assert line_number_at(path, 0) == 1
    assert line_number_at(path, 5) is None
    path.write_bytes(b"a\nb\n")
    assert line_number_at(path, 2) == 2
    assert line_number_at(path, 5) is None


def visible(markup: str) -> str:
    """What a reader of the page sees: the text without tags, entities decoded."""
    return html_module.unescape(re.sub(r"<[^>]*>", "", markup))


def test_a_secret_that_only_comes_together_on_the_page_is_hidden_there() -> None:
    # A DCS string (sixel graphics) and a C1 control inside the secret: the byte masker does
    # not look through them, but the page drops both, so the page must mask what it shows.
    secret = "page-only-secret-value"
    line = f"key={secret[:8]}\x1bPq#0;2;0;0;0\x1b\\{secret[8:12]}\u0085{secret[12:]} done\n"
    line = line.encode()
    masker = SecretMasker([secret])
    assert b"***" not in masker.mask(line)  # the bytes keep it, noise and all…

    markup, _ = LineRenderer(masker).render(line, final=True)

    shown = visible(markup)
    assert secret not in shown  # …and not on the page, where it comes together
    assert shown.endswith("key=*** done"), shown


def test_hiding_keeps_the_colours_around_the_secret() -> None:
    masker = SecretMasker(["coloured-secret"])
    line = b"\x1b[32mok \x1b[31mcoloured-\x1b[1msecret\x1b[0m tail\n"

    markup, _ = LineRenderer(masker).render(line, final=True)

    assert visible(markup).endswith("ok *** tail")
    assert '<span class="f2">ok </span><span class="f1">***</span>' in markup


def test_the_failure_begins_at_makes_first_error_line_among_those_shown(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    data = (
        b"[hobotnica] checkout abc\ncc -c x.c\nx.c:1: error: no\n"
        b"make[1]: *** [Makefile:2: x.o] Error 1\n"
        b"\x1b[31mmake: *** [Makefile:5: test] Error 2\x1b[0m\n[hobotnica] make exited 2\n"
    )
    log.write_bytes(data)

    assert read_tail(log, 1 << 20, NO_SECRETS, final=True).failure_line == 4
    # Shown from line 5 on: the link goes to a line on the page.
    from_line_5 = len(data) - data.index(b"\x1b[31m")
    assert read_tail(log, from_line_5, NO_SECRETS, final=True).failure_line == 5


def test_without_a_make_error_the_failure_is_the_last_line_the_build_printed(
    tmp_path: Path,
) -> None:
    log = tmp_path / "1.log"
    log.write_bytes(
        b"one\nmake: [Makefile:2: x] Error 1 (ignored)\nlast words\n\n[hobotnica] bye\n"
    )

    assert read_tail(log, 1 << 20, NO_SECRETS, final=True).failure_line == 3
