"""Replace secret values by `***` in a stream of bytes, however the stream is cut into chunks.

Each secret is masked as written, line by line when it spans lines, in its URL-encoded, base64,
JSON-, TOML- and HTML-escaped forms (base64 also inside a longer encoded blob, at each of the
three byte alignments), and with terminal noise inside it: control characters and escape
sequences (colours, a BEL, a NUL) between any two of its bytes, which a terminal or a page drops
when it shows the text. Binary secrets (the session key) are masked raw, in hex and in
base64. Masking guards against accidents (a build that echoes its environment, a test that
prints a config); a hostile build can always print a secret reversed.

The masker keeps back the last bytes of every chunk that could still begin a secret (a few times
the longest form), so a secret split across two reads of the pipe is still found whole — but
never a whole line, unless a secret itself spans lines: no other form can match across a
newline, so a build that printed a line and then went quiet shows that line now (in its live
log), not at its next output.

`text_spans` finds the plain forms in text a page is about to show, after it dropped what it
does not display: the last mask, after the last transformation.
"""

import base64
import functools
import html
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from runner.core.setting_checks import MIN_SECRET_LENGTH

MASK = b"***"
# What a terminal or a page does not show: escape sequences (CSI with its parameters, OSC to BEL
# or ST, a two-byte escape, a lone ESC), C0 controls but newline and tab, and DEL. Possessive:
# noise is never given back to the secret's own bytes, so the pattern stays linear.
_NOISE = (
    rb"(?>\x1b\[[0-?]{0,32}[ -/]{0,4}[@-~]"
    rb"|\x1b\][^\x07\x1b\n]{0,256}(?:\x07|\x1b\\)"
    rb"|\x1b[ -/]{0,2}[0-~]"
    rb"|[\x00-\x08\x0b-\x1f\x7f])*+"
)
# How far back a chunk's tail is kept for a secret that may go on in the next chunk: room for a
# few colour codes inside it. A noisier secret is found whole unless a read cuts it.
_KEEP_FACTOR = 4
_KEEP_SLACK = 64
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
# Every piece of noise begins with a control byte (ESC is one). Deleting all other bytes is the
# quickest way to ask whether a chunk has any: several times faster than a regex search.
_NOT_CONTROL = bytes(range(256)).translate(None, bytes([*range(0, 9), *range(11, 32), 127]))

Secret = str | bytes


def secret_forms(secret: Secret) -> set[bytes]:
    """Every form of `secret` worth masking, as bytes."""
    if isinstance(secret, bytes):
        raw = secret
        # Raw, line by line: a random key that holds a newline must not make every chunk of
        # output wait for a secret that spans lines. A key file is printed whole (cat, xxd,
        # base64), not inside a longer base64 blob: one alignment is enough, and each form
        # masked costs every byte of output some time.
        forms = {*raw.split(b"\n"), raw.hex().encode(), raw.hex().upper().encode()}
        offsets = range(1)
    else:
        raw = secret.encode()
        forms = {raw, *(form.encode() for form in _text_forms(secret))}
        forms |= {line.strip() for line in raw.splitlines()}
        offsets = range(3)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in offsets:
            forms.add(_aligned_base64(encode, raw, offset))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH - 2}


def _text_forms(secret: str) -> set[str]:
    """Escaped forms of a text secret: URLs, and those of `_readable`."""
    return {quote(secret), quote(secret, safe=""), quote_plus(secret), *_readable(secret)}


def readable_forms(secret: Secret) -> set[bytes]:
    """The forms a person reads as text, where terminal noise inside them would go unseen: the
    secret itself and its JSON, TOML and HTML escapes (not a multi-line secret, nor encodings
    no one reads, which noise inside would not hide)."""
    if isinstance(secret, bytes) or "\n" in secret:
        return set()
    return {form.encode() for form in _readable(secret)} & secret_forms(secret)


def _readable(secret: str) -> set[str]:
    json_ascii = json.dumps(secret)[1:-1]
    return {
        secret,
        json_ascii,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        # TOML's basic strings escape like JSON; some writers spell \uXXXX in upper case.
        re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json_ascii),
        html.escape(secret),
        html.escape(secret, quote=False),
    }


def _aligned_base64(encode: Callable[[bytes], bytes], raw: bytes, offset: int) -> bytes:
    """The characters of `encode(prefix + raw)` that depend on `raw` alone."""
    encoded = encode(b"\0" * offset + raw)
    first = -(-8 * offset // 6)  # ceil: skip characters that mix prefix bits
    last = (8 * (offset + len(raw))) // 6  # exclusive: skip the padded, partial tail
    return encoded[first:last]


def _trie_pattern(forms: Iterable[bytes], gap: bytes) -> bytes:
    """One pattern for all `forms`, as a trie: the regex engine tries a handful of branches at
    each byte instead of every form, which keeps a flood of output fast. `gap` goes between
    any two bytes (the noise). Where one form is a prefix of another, the longer is tried
    first, as the longest match must win. Empty for no forms."""
    trie: _Trie = {}
    for form in forms:
        node = trie
        for byte in form:
            node = node.setdefault(byte, {})
        node[_END] = {}
    return _branches(trie, gap)


_Trie = dict[int, "_Trie"]
_END = -1


def _branches(node: _Trie, gap: bytes) -> bytes:
    alternatives = []
    for byte, child in sorted(node.items()):
        if byte == _END:
            continue
        chain = [byte]
        # A chain of single, unfinished children is a plain run: no group, no recursion.
        while len(child) == 1 and _END not in child:
            ((byte, child),) = child.items()
            chain.append(byte)
        run = gap.join(re.escape(bytes([b])) for b in chain) if gap else re.escape(bytes(chain))
        rest = _branches(child, gap)
        if rest:
            rest = gap + rest
            rest = b"(?:" + rest + b")?" if _END in child else rest
        alternatives.append(run + rest)
    if len(alternatives) <= 1:
        return b"".join(alternatives)
    return b"(?:" + b"|".join(alternatives) + b")"


class _Rules:
    """What to mask for one set of secrets: patterns compiled once, shared by every masker of the
    same secrets (the pages make one per request, builds one each)."""

    def __init__(self, secrets: tuple[Secret, ...]) -> None:
        forms = {f for s in secrets for f in secret_forms(s)}
        readable = {f for s in secrets for f in readable_forms(s) if not _CONTROL_BYTES.search(f)}
        self.plain = re.compile(_trie_pattern(forms, b"")) if forms else None
        self._noisy_source = (
            b"(?:%s)|(?:%s)" % (_trie_pattern(readable, _NOISE), self.plain.pattern)
            if readable and self.plain
            else None
        )
        self._texts = sorted({_decoded(f) for f in forms} - {""}, key=len, reverse=True)
        longest = max((len(f) for f in forms), default=1)
        self.keep = longest * _KEEP_FACTOR + _KEEP_SLACK
        self.spans_lines = any(b"\n" in f for f in forms)

    def pattern_for(self, data: bytes) -> "re.Pattern[bytes]":
        """Output without a control byte (most of it) needs no noise: the plain pattern is
        several times faster."""
        assert self.plain is not None
        if self.noisy is None or not data.translate(None, _NOT_CONTROL):
            return self.plain
        return self.noisy

    @functools.cached_property
    def noisy(self) -> "re.Pattern[bytes] | None":
        # Compiled at the first chunk with a control byte: compiling it costs milliseconds.
        return None if self._noisy_source is None else re.compile(self._noisy_source)

    @functools.cached_property
    def text(self) -> "re.Pattern[str] | None":
        # Compiled when a page first asks.
        return re.compile("|".join(map(re.escape, self._texts))) if self._texts else None


@functools.lru_cache(maxsize=64)
def _rules(secrets: tuple[Secret, ...]) -> _Rules:
    return _Rules(secrets)


class SecretMasker:
    def __init__(self, secrets: Iterable[Secret]) -> None:
        self._rules = _rules(tuple(sorted({s for s in secrets if s}, key=repr)))
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Masked bytes that are safe to emit now; a possible partial secret is kept back."""
        rules = self._rules
        if rules.plain is None:
            return chunk
        data = self._pending + chunk
        cut = max(0, len(data) - rules.keep)
        if not rules.spans_lines:
            cut = max(cut, data.rfind(b"\n") + 1)
        out = bytearray()
        position = 0
        for match in rules.pattern_for(data).finditer(data):
            if match.start() >= cut:
                break
            out += data[position : match.start()]
            out += MASK
            position = match.end()
        cut = max(cut, position)
        out += data[position:cut]
        self._pending = data[cut:]
        return bytes(out)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self.mask(rest)

    def mask(self, data: bytes) -> bytes:
        rules = self._rules
        return data if rules.plain is None else rules.pattern_for(data).sub(MASK, data)

    def mask_text(self, text: str) -> str:
        masked = self.mask(text.encode()).decode(errors="replace")
        pattern = self._rules.text
        return masked if pattern is None else pattern.sub(MASK.decode(), masked)

    def text_spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets stand in `text` as shown (start, end), for a renderer to hide them."""
        pattern = self._rules.text
        return [] if pattern is None else [match.span() for match in pattern.finditer(text)]


def _decoded(form: bytes) -> str:
    try:
        return form.decode()
    except UnicodeDecodeError:  # a binary secret's raw bytes: never shown as text
        return ""
