"""`runner.web.ansi`: terminal colours become spans, and nothing a log holds becomes markup."""

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.web.ansi import AnsiRenderer, apply_sgr, nearest_xterm_colour, palette_css

ALLOWED_TAG = re.compile(r'<span class="[a-z0-9 ]+">|</span>')


def render(*lines: str) -> list[str]:
    renderer = AnsiRenderer()
    return [renderer.render_line(line) for line in lines]


def text_of(rendered: str) -> str:
    return html.unescape(ALLOWED_TAG.sub("", rendered))


def test_colours_and_attributes_become_classes() -> None:
    assert render("\x1b[1;31mred\x1b[0m plain \x1b[4;42munder\x1b[24mgreen-bg") == [
        '<span class="f1 bo">red</span> plain <span class="b2 un">under</span>'
        '<span class="b2">green-bg</span>'
    ]
    assert render("\x1b[90mgrey\x1b[39m \x1b[103mhi\x1b[49m \x1b[2;3;9mx\x1b[22;23;29my") == [
        '<span class="f8">grey</span> <span class="b11">hi</span> <span class="di it st">x</span>y'
    ]


def test_colour_carries_over_to_the_next_line_and_each_line_closes_its_spans() -> None:
    assert render("\x1b[32mgreen", "still green", "\x1b[mplain") == [
        '<span class="f2">green</span>',
        '<span class="f2">still green</span>',
        "plain",
    ]


def test_256_colour_and_truecolour_map_to_the_palette() -> None:
    assert render("\x1b[38;5;208mo\x1b[48;5;17mb")[0] == (
        '<span class="f208">o</span><span class="f208 b17">b</span>'
    )
    # 24-bit colours become the nearest xterm colour; colon forms too (with a colour space id).
    assert render("\x1b[38;2;255;0;0mr")[0] == '<span class="f196">r</span>'
    assert render("\x1b[38:2::0:0:255mb")[0] == '<span class="f21">b</span>'
    assert render("\x1b[38:5:82mg")[0] == '<span class="f82">g</span>'
    # `38;2;0;…` followed by more codes: the 0 is red, not a colour-space id.
    assert render("\x1b[38;2;0;128;255;1mx")[0] == '<span class="f33 bo">x</span>'
    assert nearest_xterm_colour(128, 128, 128) == 244


def test_inverse_swaps_colours_also_the_default_ones() -> None:
    assert render("\x1b[7mx\x1b[27my \x1b[31;7mz")[0] == (
        '<span class="fi bi">x</span>y <span class="bi b1">z</span>'.replace("bi b1", "fi b1")
    )


@pytest.mark.parametrize(
    "params", ["38;5", "38;5;256", "38;2;1;2", "38;2;300;0;0", "99999999", "x;y"]
)
def test_malformed_sgr_changes_nothing(params: str) -> None:
    bold = apply_sgr(AnsiRenderer().style, "1")

    assert apply_sgr(bold, params) == bold


def test_an_empty_parameter_means_reset() -> None:
    style = apply_sgr(AnsiRenderer().style, "1;;31")

    assert (style.bold, style.fg) == (False, 1)


def test_hostile_text_is_escaped_never_markup() -> None:
    (line,) = render("<script>alert('x')</script> & \"quotes\" <img src=x onerror=alert(1)>")

    assert "<script" not in line and "<img" not in line
    assert line == (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot; "
        "&lt;img src=x onerror=alert(1)&gt;"
    )


def test_escape_sequences_cannot_smuggle_markup_into_a_class() -> None:
    (line,) = render('\x1b[31;"><script>m after')

    assert "<script" not in line
    assert ALLOWED_TAG.sub("", line).count("<") == 0


def test_every_other_escape_and_control_is_dropped() -> None:
    lines = render(
        "\x1b]0;window title\x07title gone",
        "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\ text",
        "\x1b[2J\x1b[H\x1b[?25lcursor stuff",
        "\x1bPdevice control\x1b\\dcs gone",
        "unterminated \x1b[31",
        "lone escape \x1b",
        "bell\x07 nul\x00 backspace\x08 del\x7f c1\x9b31m tab\tkept",
        "\x1b(Bcharset",
    )

    assert lines == [
        "title gone",
        "link text",
        "cursor stuff",
        "dcs gone",
        "unterminated ",
        "lone escape ",
        "bell nul backspace del c1 tab\tkept",
        "charset",
    ]


def test_carriage_returns_show_what_a_terminal_ends_on() -> None:
    assert render("10%\r50%\r\x1b[32m100%\x1b[0m\r") == ['<span class="f2">100%</span>']
    assert render("windows line\r") == ["windows line"]


@given(
    st.text(alphabet=st.sampled_from(list("<>&\"'\x1b[];:m0123456789\x07\\ab\r\x9b")), max_size=80)
)
def test_any_input_renders_to_text_and_known_spans_only(line: str) -> None:
    (rendered,) = render(line)

    assert "<" not in ALLOWED_TAG.sub("", rendered)
    assert ">" not in ALLOWED_TAG.sub("", rendered)
    assert "\x1b" not in rendered and "\x07" not in rendered
    shown = text_of(rendered)
    assert "\x1b" not in shown


def test_the_palette_styles_every_class_the_renderer_writes() -> None:
    css = palette_css()

    for index in (0, 15, 16, 231, 232, 255):
        assert f".f{index}{{" in css and f".b{index}{{" in css
    assert ".f196{color:#ff0000}" in css
    for name in ("fi", "bi", "bo", "di", "it", "un", "st"):
        assert f".{name}{{" in css
