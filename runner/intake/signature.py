"""Webhook signature check: `X-Hub-Signature-256` over the raw body, in constant time.

GitHub documents the scheme at
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries.
The comparison is gidgethub's (`hmac.compare_digest`); the checks before it close the gaps that
would otherwise turn odd headers into exceptions or a fall-back to SHA-1: only a well-formed ASCII
`sha256=<64 hex>` header is ever compared, and an empty secret never verifies anything.
"""

import re

from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

_SHA256_HEADER = re.compile(r"sha256=[0-9a-f]{64}")


def is_valid_signature(body: bytes, header: str | None, secret: str) -> bool:
    if not secret or header is None or not _SHA256_HEADER.fullmatch(header):
        return False
    try:
        validate_event(body, signature=header, secret=secret)
    except ValidationFailure:
        return False
    return True
