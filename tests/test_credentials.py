"""Password hashes, signed session cookies, the session key file and `hobotnica hash-password`."""

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.core.errors import ConfigError
from runner.core.passwords import DEFAULT_N, PasswordHash, hash_password, is_password_hash
from runner.web.sessions import SESSION_LIFETIME, SessionSigner, load_session_key

HOBOTNICA = str(Path(sys.executable).parent / "hobotnica")
CHEAP = {"n": 2**4, "r": 1, "p": 1}  # the format carries its cost; tests need not pay 128 MiB
NOW = 1_800_000_000.0


# -- password hashes -------------------------------------------------------------------------


def test_a_hash_matches_its_password_only() -> None:
    encoded = hash_password("correct horse battery", **CHEAP)
    parsed = PasswordHash.parse(encoded)

    assert encoded.startswith("scrypt$16$1$1$")
    assert parsed.matches("correct horse battery")
    assert not parsed.matches("correct horse batter")
    assert not parsed.matches("")
    assert str(parsed) == encoded


def test_the_same_password_hashes_differently_each_time() -> None:
    assert hash_password("same", **CHEAP) != hash_password("same", **CHEAP)


def test_the_default_cost_is_owasps_minimum_for_scrypt() -> None:
    assert DEFAULT_N == 2**17


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hunter2",
        "scrypt$16$1$1$c2FsdHNhbHQ",  # a part missing
        "bcrypt$16$1$1$c2FsdHNhbHQ$" + "A" * 43,
        "scrypt$15$1$1$c2FsdHNhbHQ$" + "A" * 43,  # N not a power of two
        "scrypt$2097152$8$1$c2FsdHNhbHQ$" + "A" * 43,  # 2 GiB: refused, not attempted
        "scrypt$16$1$1$c2Fs$" + "A" * 43,  # salt too short
        "scrypt$16$1$1$c2FsdHNhbHQ$!!!",
        "scrypt$16$1$x$c2FsdHNhbHQ$" + "A" * 43,
        "scrypt$16$1$1$c2FsdHNhbHQ$Ä" + "A" * 42,
    ],
)
def test_malformed_or_unreasonable_hashes_are_refused(text: str) -> None:
    assert not is_password_hash(text)
    with pytest.raises(ValueError) as refused:
        PasswordHash.parse(text)
    if text:
        assert text not in str(refused.value)


def test_hash_password_reads_stdin_and_prints_a_hash_that_matches() -> None:
    result = subprocess.run(
        [HOBOTNICA, "hash-password"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert PasswordHash.parse(encoded).matches("correct horse battery")
    assert "correct horse" not in result.stderr


def test_hash_password_refuses_a_short_password() -> None:
    result = subprocess.run(
        [HOBOTNICA, "hash-password"], input="short\n", capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert "at least 8" in result.stderr


# -- the session key -------------------------------------------------------------------------


def test_the_session_key_is_created_once_private_and_then_shared(tmp_path: Path) -> None:
    first = load_session_key(tmp_path)
    second = load_session_key(tmp_path)  # another instance on the same data directory

    assert first == second and len(first) == 32
    assert stat.S_IMODE((tmp_path / "session.key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["session.key"]


def test_a_damaged_session_key_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "session.key").write_bytes(b"short")

    with pytest.raises(ConfigError, match=r"session\.key"):
        load_session_key(tmp_path)


# -- session cookies -------------------------------------------------------------------------

ALICE_HASH = "scrypt$16$1$1$c2FsdHNhbHQ$" + "A" * 43


def users(user: str) -> str | None:
    return {"alice": ALICE_HASH}.get(user)


@pytest.fixture
def signer() -> SessionSigner:
    return SessionSigner(b"k" * 32)


def test_an_issued_session_verifies_until_it_expires(signer: SessionSigner) -> None:
    cookie, session = signer.issue("alice", ALICE_HASH, NOW)

    assert signer.verify(cookie, users, NOW + 1) == session
    assert session.expires == NOW + SESSION_LIFETIME
    assert signer.verify(cookie, users, NOW + SESSION_LIFETIME) is None


def test_a_tampered_cookie_is_refused(signer: SessionSigner) -> None:
    cookie, _ = signer.issue("alice", ALICE_HASH, NOW)
    version, user, expires, nonce, mac = cookie.split(".")
    later = str(int(expires) + 60)

    for forged in (
        ".".join((version, user, later, nonce, mac)),  # a longer life
        ".".join((version, user, expires, "other-nonce", mac)),
        cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),
        "",
        "v1....",
        "v2" + cookie[2:],
    ):
        assert signer.verify(forged, users, NOW + 1) is None, forged
    assert SessionSigner(b"x" * 32).verify(cookie, users, NOW + 1) is None  # another key


def test_removing_a_user_or_changing_its_password_ends_its_sessions(signer: SessionSigner) -> None:
    cookie, _ = signer.issue("alice", ALICE_HASH, NOW)
    changed = "scrypt$16$1$1$bmV3c2FsdHM$" + "B" * 43

    assert signer.verify(cookie, lambda _user: None, NOW + 1) is None
    assert signer.verify(cookie, lambda _user: changed, NOW + 1) is None


def test_a_csrf_token_belongs_to_its_session(signer: SessionSigner) -> None:
    _, mine = signer.issue("alice", ALICE_HASH, NOW)
    _, other = signer.issue("alice", ALICE_HASH, NOW)

    token = signer.csrf_token(mine)
    assert signer.is_valid_csrf(mine, token)
    assert not signer.is_valid_csrf(other, token)
    assert not signer.is_valid_csrf(mine, "")
