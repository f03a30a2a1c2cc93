"""`SecretMasker`: secrets and their encoded forms become `***`, however the output is chunked."""

import base64
import html
import itertools
import json
import random
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.masking import MASK, SecretMasker

SECRET = "s3cr3t-T0ken/with+odd=chars @:x"
OTHER = "another-deploy-key-98765"
PEM = (
    "-----BEGIN TEST PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END TEST PRIVATE KEY-----"
)

Encoder = Callable[[bytes], bytes]
ENCODERS: list[Encoder] = [base64.b64encode, base64.urlsafe_b64encode]


def mask_chunked(masker: SecretMasker, chunks: Iterable[bytes]) -> bytes:
    out = b"".join(masker.feed(chunk) for chunk in chunks)
    return out + masker.flush()


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    count = rng.randint(1, max(1, len(data) // 3))
    return split_at(data, (rng.randint(0, len(data)) for _ in range(count)))


def chunkings(data: bytes) -> list[list[bytes]]:
    fixed = [split_every(data, size) for size in (1, 2, 3, 7)]
    return [[data], *fixed, *(random_splits(data, seed) for seed in range(20))]


def secret_only_core(encode: Encoder, prefix: bytes, secret: bytes, suffix: bytes) -> bytes:
    """The characters of `encode(prefix + secret + suffix)` that depend on the secret alone."""
    encoded = encode(prefix + secret + suffix)
    first = -(-8 * len(prefix) // 6)
    last = 8 * (len(prefix) + len(secret)) // 6
    return encoded[first:last]


def test_plain_secret_is_replaced() -> None:
    masker = SecretMasker([SECRET])
    out = mask_chunked(masker, [f"export TOKEN={SECRET}\ndone\n".encode()])
    assert out == b"export TOKEN=***\ndone\n"
    assert masker.mask(SECRET.encode()) == MASK
    assert masker.mask_text(f"[{SECRET}]") == "[***]"


def test_every_chunking_gives_the_same_output_and_never_the_secret() -> None:
    secret = SECRET.encode()
    data = (
        b"start " + secret + b" middle\n"
        + secret + secret + b"\n"
        + b"b64: " + base64.b64encode(secret) + b"\n"
        + b"url: " + quote_plus(SECRET).encode() + b"\n"
        + b"\x00\xff binary \x80" + secret[:5] + b" not the secret\n"
        + b"end " + secret
    )  # fmt: skip
    expected = SecretMasker([SECRET]).mask(data)
    assert secret not in expected
    assert expected.count(MASK) == 6
    for chunks in chunkings(data):
        assert b"".join(chunks) == data
        out = mask_chunked(SecretMasker([SECRET]), chunks)
        assert out == expected, [len(c) for c in chunks]
        assert secret not in out


def test_feed_keeps_back_a_possible_partial_secret_and_flush_releases_it() -> None:
    masker = SecretMasker([SECRET])
    secret = SECRET.encode()
    emitted = masker.feed(b"log line\n" + secret[:10])
    assert secret[:10] not in emitted
    assert b"log line\n".startswith(emitted)
    emitted += masker.feed(secret[10:] + b" tail")
    assert secret not in emitted
    rest = masker.flush()
    assert emitted + rest == b"log line\n*** tail"
    assert masker.flush() == b""

    masker = SecretMasker([SECRET])
    partial = masker.feed(b"ends with a fragment " + secret[:-1])
    assert partial + masker.flush() == b"ends with a fragment " + secret[:-1]


def test_complete_lines_are_never_kept_back() -> None:
    masker = SecretMasker([SECRET, OTHER])

    # A build that printed a line and went quiet: its live log shows the line now.
    assert masker.feed(b"step 1 ok\n") == b"step 1 ok\n"
    assert masker.feed(b"half a li") == b""
    assert masker.feed(b"ne with " + SECRET.encode()[:5]) == b""
    assert masker.feed(SECRET.encode()[5:] + b"\nnext") == b"half a line with ***\n"
    assert masker.flush() == b"next"
    # Unless a secret spans lines: then a line may be the start of it.
    pem = SecretMasker([PEM])
    first = PEM.splitlines()[0].encode() + b"\n"
    assert pem.feed(b"x\n" + first) != b"x\n" + first


def test_multiline_secret_is_masked_whole_and_line_by_line() -> None:
    masker = SecretMasker([PEM])
    lines = PEM.splitlines()
    assert masker.mask(PEM.encode()) == MASK
    printed = "".join(f"  {line}\n" for line in lines).encode()
    assert masker.mask(printed) == b"  ***\n  ***\n  ***\n"
    crlf = "".join(f"> {line}\r\n" for line in lines).encode()
    out = mask_chunked(SecretMasker([PEM]), split_every(crlf, 5))
    assert out == b"> ***\r\n> ***\r\n> ***\r\n"
    interleaved = f"{lines[2]} then {lines[1]} and {lines[0]}".encode()
    out = mask_chunked(SecretMasker([PEM]), split_every(interleaved, 3))
    assert out == b"*** then *** and ***"
    for line in lines:
        assert line.encode() not in out


@pytest.mark.parametrize("encode", ENCODERS, ids=["standard", "urlsafe"])
@pytest.mark.parametrize("secret", [SECRET, OTHER, PEM, "ab\xe9cd\u20ac??>>"])
def test_base64_of_the_secret_is_masked(encode: Encoder, secret: str) -> None:
    raw = secret.encode()
    encoded = encode(raw)
    out = mask_chunked(SecretMasker([secret]), split_every(b"value=" + encoded + b";", 4))
    assert encoded not in out
    assert encoded.rstrip(b"=")[:-1] not in out
    assert out.startswith(b"value=***")


@pytest.mark.parametrize(
    "encoded",
    [
        quote(SECRET),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
    ],
    ids=["quote", "quote-safe-empty", "quote_plus"],
)
def test_url_encoded_secret_is_masked(encoded: str) -> None:
    assert encoded != SECRET
    masker = SecretMasker([SECRET])
    out = masker.mask(f"GET https://example.test/api?token={encoded}&x=1".encode())
    assert out == b"GET https://example.test/api?token=***&x=1"


@pytest.mark.parametrize("encode", ENCODERS, ids=["standard", "urlsafe"])
@pytest.mark.parametrize("secret", [SECRET, OTHER, SECRET + "x", SECRET + "xy"])
@pytest.mark.parametrize("prefix_length", [0, 1, 2])
def test_base64_of_the_secret_inside_a_longer_blob_is_masked(
    encode: Encoder, secret: str, prefix_length: int
) -> None:
    raw = secret.encode()
    prefix = b"\x01\xfe\x7f"[:prefix_length]
    suffix = b"\n{trailing json}\x00"
    blob = encode(prefix + raw + suffix)
    core = secret_only_core(encode, prefix, raw, suffix)
    assert len(core) >= len(raw)
    assert core in blob
    expected = SecretMasker([secret]).mask(blob)
    for chunks in (split_every(blob, 1), split_every(blob, 7), [blob]):
        out = mask_chunked(SecretMasker([secret]), chunks)
        assert out == expected
        assert MASK in out
        assert core not in out
        assert core[:-1] not in out
        assert core[1:] not in out
        if prefix_length == 0:
            assert encode(raw).rstrip(b"=")[:-1] not in out
        # what is left is the blob with the secret's own characters replaced
        assert len(out) <= len(blob) - len(core) + len(MASK)


def test_secret_that_is_a_prefix_of_another_secret() -> None:
    short = "deploy-key-1234"
    long = short + "-extended"
    text = f"a {long} b {short} c {long}{short} d\n".encode()
    for secrets in ([short, long], [long, short]):
        expected = b"a *** b *** c ****** d\n"
        assert SecretMasker(secrets).mask(text) == expected
        for chunks in chunkings(text):
            out = mask_chunked(SecretMasker(secrets), chunks)
            assert out == expected
            assert b"-extended" not in out


def test_two_secrets_are_both_masked() -> None:
    text = f"{SECRET} and {OTHER} and {base64.b64encode(OTHER.encode()).decode()}".encode()
    masker = SecretMasker([SECRET, OTHER])
    assert masker.mask(text) == b"*** and *** and ***"


def test_no_secrets_leaves_output_unchanged() -> None:
    data = bytes(range(256)) * 3 + b"\n*** plain text ***\n"
    for secrets in ([], [""]):
        masker = SecretMasker(secrets)
        assert masker.mask(data) == data
        assert mask_chunked(masker, split_every(data, 5)) == data
        assert masker.flush() == b""
        assert masker.mask_text("hello") == "hello"


def test_text_without_the_secret_passes_through_byte_identical() -> None:
    data = bytes(range(256)) * 4 + b"\r\n\x1b[31mred\x1b[0m " + SECRET[:-1].encode() + b"\n"
    assert SecretMasker([SECRET, PEM]).mask(data) == data
    for chunks in chunkings(data):
        assert mask_chunked(SecretMasker([SECRET, PEM]), chunks) == data


SECRET_ALPHABET = st.characters(
    min_codepoint=0x21, max_codepoint=0x24F, blacklist_characters="*"
) | st.sampled_from(list(" \t"))


@st.composite
def masked_cases(draw: st.DrawFn) -> tuple[str, bytes, list[int]]:
    secret = draw(st.text(SECRET_ALPHABET, min_size=6, max_size=40))
    raw = secret.encode()
    pieces = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=30),
                st.text(max_size=20).map(str.encode),
                st.just(raw),
                st.just(base64.b64encode(raw)),
            ),
            max_size=12,
        )
    )
    positions = draw(st.lists(st.integers(min_value=0, max_value=len(pieces)), max_size=4))
    for position in sorted(positions, reverse=True):
        pieces.insert(position, raw)
    text = b"".join(pieces)
    points = draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=20))
    return secret, text, points


@settings(max_examples=300, deadline=None)
@given(masked_cases())
def test_property_chunked_masking_equals_whole_and_never_leaks(
    case: tuple[str, bytes, list[int]],
) -> None:
    secret, text, points = case
    raw = secret.encode()
    whole = SecretMasker([secret]).mask(text)
    chunked = mask_chunked(SecretMasker([secret]), split_at(text, points))
    assert chunked == whole
    assert raw not in whole
    assert base64.b64encode(raw).rstrip(b"=")[:-1] not in whole
    if len(raw.strip()) >= len(raw) - 2:
        assert raw.strip() not in whole


QUOTED = 'pa"ss\\wörd-Ünïcode-42'
NOISES = [b"\x07", b"\x00", b"\x1b[31m", b"\x1b[0m\x1b[1;32m", b"\r", b"\x1b]0;title\x07"]


@pytest.mark.parametrize("noise", NOISES, ids=repr)
def test_terminal_noise_inside_a_secret_does_not_unmask_it(noise: bytes) -> None:
    # A terminal, and the page, drop these: the secret would show whole.
    secret = SECRET.encode()
    noisy = secret[:7] + noise + secret[7:15] + noise + noise + secret[15:]
    data = b"token: " + noisy + b" end\n"
    for chunks in chunkings(data):
        out = mask_chunked(SecretMasker([SECRET]), chunks)
        assert out == b"token: *** end\n", (chunks, out)


def test_any_amount_of_noise_inside_a_secret_is_looked_through() -> None:
    secret = SECRET.encode()
    noisy = secret[:5] + b"\x07\x1b[1m" * 40 + secret[5:9] + b"\x1b]8;;http://x\x1b\\" + secret[9:]
    assert SecretMasker([SECRET]).mask(b"<" + noisy + b">") == b"<***>"


@pytest.mark.parametrize(
    "form",
    [
        json.dumps(QUOTED)[1:-1],  # JSON, \u escapes for non-ASCII
        json.dumps(QUOTED, ensure_ascii=False)[1:-1],  # JSON as UTF-8
        json.dumps(QUOTED)[1:-1]
        .replace("\\u00f6", "\\u00F6")  # TOML writers' upper case
        .replace("\\u00dc", "\\u00DC")
        .replace("\\u00ef", "\\u00EF"),
        html.escape(QUOTED),
        quote(QUOTED, safe=""),
    ],
    ids=["json-ascii", "json-utf8", "toml-upper", "html", "url"],
)
def test_escaped_forms_of_a_secret_with_quotes_and_non_ascii_are_masked(form: str) -> None:
    masker = SecretMasker([QUOTED])
    line = f'{{"password": "{form}"}}\n'.encode()
    for chunks in chunkings(line):
        assert mask_chunked(SecretMasker([QUOTED]), chunks) == b'{"password": "***"}\n'
    assert masker.mask_text(f"x {form} y") == "x *** y"


def test_a_binary_secret_is_masked_raw_in_hex_and_in_base64() -> None:
    key = bytes(range(200, 232))
    masker = SecretMasker([key])
    for shown in (key, key.hex().encode(), key.hex().upper().encode()):
        assert masker.mask(b"[" + shown + b"]") == b"[***]", shown
    # base64's last characters mix in padding bits: they stay, and say nothing of the key.
    assert masker.mask(base64.b64encode(key)) == b"***c="


def test_text_spans_find_plain_forms_in_visible_text() -> None:
    masker = SecretMasker([SECRET, OTHER])
    text = f"a {SECRET} b {OTHER}"
    spans = masker.text_spans(text)
    assert [text[s:e] for s, e in spans] == [SECRET, OTHER]
    assert SecretMasker([]).text_spans(text) == []


def test_a_binary_secret_with_a_newline_does_not_hold_back_whole_lines() -> None:
    key = b"\x01\x02\x03\x04\x05\x06\nrandom-key-bytes\xff\xfe"
    masker = SecretMasker([key])

    assert masker.feed(b"progress line\n") == b"progress line\n"
    assert masker.mask(key) == b"***\n***"
