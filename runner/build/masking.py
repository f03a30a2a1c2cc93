"""Replace secret values by `***` in a stream of bytes, however the stream is cut into chunks.

Each secret is masked as written, line by line when it spans lines, and in its URL-encoded and
base64 forms (including base64 of the secret inside a longer encoded blob, at each of the three
byte alignments). The masker keeps back the last `longest pattern - 1` bytes of every chunk, so a
secret split across two reads of the pipe is still found whole — but never a whole line, unless
a secret itself spans lines: no other form can match across a newline, so a build that printed
a line and then went quiet shows that line now (in its live log), not at its next output.
"""

import base64
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from runner.settings import MIN_SECRET_LENGTH

MASK = b"***"


def secret_forms(secret: str) -> set[bytes]:
    raw = secret.encode()
    forms = {
        raw,
        quote(secret).encode(),
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
    }
    forms |= {line.strip() for line in raw.splitlines()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            forms.add(_aligned_base64(encode, raw, offset))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH - 2}


def _aligned_base64(encode: Callable[[bytes], bytes], raw: bytes, offset: int) -> bytes:
    """The characters of `encode(prefix + raw)` that depend on `raw` alone."""
    encoded = encode(b"\0" * offset + raw)
    first = -(-8 * offset // 6)  # ceil: skip characters that mix prefix bits
    last = (8 * (offset + len(raw))) // 6  # exclusive: skip the padded, partial tail
    return encoded[first:last]


class SecretMasker:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms = sorted({f for s in secrets if s for f in secret_forms(s)}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(f) for f in forms)) if forms else None
        self._keep = max((len(f) for f in forms), default=1) - 1
        self._spans_lines = any(b"\n" in f for f in forms)
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Masked bytes that are safe to emit now; a possible partial secret is kept back."""
        if self._pattern is None:
            return chunk
        data = self._pending + chunk
        cut = max(0, len(data) - self._keep)
        if not self._spans_lines:
            cut = max(cut, data.rfind(b"\n") + 1)
        out = bytearray()
        position = 0
        for match in self._pattern.finditer(data):
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
        return data if self._pattern is None else self._pattern.sub(MASK, data)

    def mask_text(self, text: str) -> str:
        return self.mask(text.encode()).decode(errors="replace")
