"""`is_valid_signature`: only a well-formed `sha256=<64 lowercase hex>` HMAC of the body verifies.

The test vector is GitHub's own, from
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries.
Every other input answers False; none raises.
"""

import hashlib
import hmac

import pytest

from runner.intake.signature import is_valid_signature

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
DIGEST = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
HEADER = f"sha256={DIGEST}"


def _flip(hex_digit: str) -> str:
    return "0" if hex_digit != "0" else "1"


def test_github_documented_test_vector_verifies() -> None:
    assert is_valid_signature(BODY, HEADER, SECRET) is True


def test_test_vector_matches_a_locally_computed_hmac() -> None:
    computed = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert computed == DIGEST


def test_any_body_signed_with_the_secret_verifies() -> None:
    body = '{"zen": "Keep it logically awesome.", "emoji": "🐙"}'.encode()
    header = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert is_valid_signature(body, header, SECRET) is True


def test_empty_body_signed_with_the_secret_verifies() -> None:
    header = "sha256=" + hmac.new(SECRET.encode(), b"", hashlib.sha256).hexdigest()
    assert is_valid_signature(b"", header, SECRET) is True


@pytest.mark.parametrize("position", [0, 1, 31, 32, 62, 63])
def test_one_flipped_hex_digit_is_rejected(position: int) -> None:
    digest = DIGEST[:position] + _flip(DIGEST[position]) + DIGEST[position + 1 :]
    assert digest != DIGEST
    assert is_valid_signature(BODY, f"sha256={digest}", SECRET) is False


def test_other_body_is_rejected() -> None:
    assert is_valid_signature(b"Hello, World?", HEADER, SECRET) is False
    assert is_valid_signature(BODY + b"\n", HEADER, SECRET) is False
    assert is_valid_signature(b"", HEADER, SECRET) is False


def test_other_secret_is_rejected() -> None:
    assert is_valid_signature(BODY, HEADER, "It's a Secret to Nobody") is False
    assert is_valid_signature(BODY, HEADER, SECRET + " ") is False


def test_uppercase_hex_is_rejected() -> None:
    assert is_valid_signature(BODY, f"sha256={DIGEST.upper()}", SECRET) is False


def test_uppercase_algorithm_prefix_is_rejected() -> None:
    assert is_valid_signature(BODY, f"SHA256={DIGEST}", SECRET) is False


def test_sha1_header_is_rejected_even_when_its_hmac_is_right() -> None:
    sha1 = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert is_valid_signature(BODY, f"sha1={sha1}", SECRET) is False
    # The SHA-256 digest under a sha1 label is no better.
    assert is_valid_signature(BODY, f"sha1={DIGEST}", SECRET) is False


@pytest.mark.parametrize("algorithm", ["sha512", "sha384", "md5", "sha224"])
def test_other_algorithms_are_rejected(algorithm: str) -> None:
    digest = hmac.new(SECRET.encode(), BODY, algorithm).hexdigest()
    assert is_valid_signature(BODY, f"{algorithm}={digest}", SECRET) is False


def test_missing_header_is_rejected() -> None:
    assert is_valid_signature(BODY, None, SECRET) is False


@pytest.mark.parametrize("header", ["", "sha256=", "sha256", "=", DIGEST, f"={DIGEST}"])
def test_empty_or_incomplete_header_is_rejected(header: str) -> None:
    assert is_valid_signature(BODY, header, SECRET) is False


def test_empty_secret_never_verifies() -> None:
    # Even a signature made with the empty key: an unset secret must not accept anything.
    empty_key_header = "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    assert is_valid_signature(BODY, empty_key_header, "") is False
    assert is_valid_signature(BODY, HEADER, "") is False
    assert (
        is_valid_signature(b"", "sha256=" + hmac.new(b"", b"", "sha256").hexdigest(), "") is False
    )


@pytest.mark.parametrize(
    "header",
    [
        # A non-ASCII character in place of the last hex digit.
        f"sha256={DIGEST[:-1]}é",
        # Arabic-Indic and fullwidth digits: "digits" to str.isdigit, not hex to GitHub.
        "sha256=" + "٣" * 64,
        "sha256=" + "\uff10" * 64,
        # What aiohttp makes of a raw 0xff byte in a header (surrogateescape).
        f"sha256={DIGEST[:-1]}\udcff",
        f"sha256={DIGEST}\udcff",
        "sha256=" + "\xff" * 64,
        f"şha256={DIGEST}",
        f"sha256={DIGEST}🐙",
    ],
)
def test_non_ascii_header_is_rejected_without_an_exception(header: str) -> None:
    assert is_valid_signature(BODY, header, SECRET) is False


@pytest.mark.parametrize(
    "header",
    [
        f" {HEADER}",
        f"{HEADER} ",
        f"{HEADER}\n",
        f"{HEADER}\r\n",
        f"\t{HEADER}",
        f"sha256= {DIGEST}",
        f"sha256 ={DIGEST}",
        f"sha256={DIGEST[:32]} {DIGEST[32:]}",
        f"{HEADER}\x00",
    ],
)
def test_extra_whitespace_is_rejected(header: str) -> None:
    assert is_valid_signature(BODY, header, SECRET) is False


@pytest.mark.parametrize("length", [0, 1, 32, 40, 63])
def test_truncated_digest_is_rejected(length: int) -> None:
    assert is_valid_signature(BODY, f"sha256={DIGEST[:length]}", SECRET) is False


@pytest.mark.parametrize("suffix", ["0", "00", DIGEST])
def test_overlong_digest_is_rejected(suffix: str) -> None:
    assert is_valid_signature(BODY, f"{HEADER}{suffix}", SECRET) is False


@pytest.mark.parametrize(
    "header",
    [
        f"sha256={DIGEST},sha256={DIGEST}",
        f"sha256={DIGEST}, sha1=abc",
        f"sha256=sha256={DIGEST}",
        f"sha256:{DIGEST}",
        "sha256=" + "g" * 64,
        "sha256=" + "z" * 64,
        f"sha256=0x{DIGEST[:62]}",
    ],
)
def test_malformed_header_is_rejected(header: str) -> None:
    assert is_valid_signature(BODY, header, SECRET) is False


def test_non_ascii_secret_and_body_do_not_raise() -> None:
    secret = "Ключ 🔑"
    body = "Привет, мир!".encode()
    header = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert is_valid_signature(body, header, secret) is True
    assert is_valid_signature(body, HEADER, secret) is False
