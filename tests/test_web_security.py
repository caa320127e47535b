"""The admin page's security parts (appliance/web/security.py): password hashes, the password and key
files, session cookies, CSRF tokens and the sign-in rate limit."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.web.security import (
    MAX_FAILURES,
    Signer,
    SignInLimiter,
    hash_password,
    load_or_create_secret,
    read_passwords,
    set_password,
    verify_password,
)

PASSWORD = "correct horse battery staple"


class Clock:
    """A settable clock, seconds."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- hashing -----------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only():
    stored = hash_password(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert not verify_password("", stored)
    assert PASSWORD not in stored


def test_each_hash_has_its_own_salt():
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and verify_password(PASSWORD, a) and verify_password(PASSWORD, b)


def test_the_hash_is_scrypt_with_the_stored_parameters():
    scheme, n, r, p, salt, digest = hash_password(PASSWORD).split("$")
    import base64

    expected = hashlib.scrypt(
        PASSWORD.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    assert scheme == "scrypt" and int(n) >= 2**14 and base64.b64decode(digest) == expected


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt$1$2$3",
        "md5$16384$8$1$AAAA$AAAA",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$!!$AA",
    ],
)
def test_a_malformed_stored_hash_never_verifies(stored):
    assert not verify_password(PASSWORD, stored)


# -- files -------------------------------------------------------------------------------------


def test_password_file_is_private_and_keeps_other_admins(tmp_path: Path):
    path = tmp_path / "web-admins"
    set_password(path, "alice", PASSWORD)
    set_password(path, "bob", "another long password")
    set_password(path, "alice", "alice's new password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = read_passwords(path)
    assert sorted(entries) == ["alice", "bob"]
    assert verify_password("alice's new password", entries["alice"])
    assert not verify_password(PASSWORD, entries["alice"])
    assert verify_password("another long password", entries["bob"])
    assert PASSWORD not in path.read_text()


def test_short_passwords_and_odd_admin_names_are_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="at least 10 characters"):
        set_password(tmp_path / "p", "admin", "short")
    with pytest.raises(ConfigError, match="admin name"):
        set_password(tmp_path / "p", "al|ice", PASSWORD)
    assert not (tmp_path / "p").exists()


def test_a_damaged_password_file_is_named(tmp_path: Path):
    path = tmp_path / "web-admins"
    path.write_text("admin:$2b$bcrypt-or-so\n")
    with pytest.raises(ConfigError, match="web-admins:1"):
        read_passwords(path)


def test_secret_key_is_made_once_private_and_kept(tmp_path: Path):
    path = tmp_path / "web-secret"
    key = load_or_create_secret(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == key
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="delete the file"):
        load_or_create_secret(path)


# -- sessions ------------------------------------------------------------------------------------


def test_session_names_its_admin_until_it_expires():
    clock = Clock()
    signer = Signer(b"k" * 32, session_s=3600, clock=clock)
    token = signer.new_session("alice")
    assert signer.session_user(token) == "alice"
    clock.t += 3599
    assert signer.session_user(token) == "alice"
    clock.t += 2
    assert signer.session_user(token) is None


def test_a_session_cannot_be_forged_extended_or_moved_to_another_key():
    signer = Signer(b"k" * 32, session_s=3600)
    token = signer.new_session("alice")
    name, expires, nonce, mac = token.split("|")
    assert signer.session_user(f"bob|{expires}|{nonce}|{mac}") is None
    assert signer.session_user(f"{name}|{int(expires) + 10**6}|{nonce}|{mac}") is None
    assert signer.session_user(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert Signer(b"j" * 32, session_s=3600).session_user(token) is None
    for junk in ("", "|", "a|b", "alice|||", None):
        assert signer.session_user(junk) is None


# -- CSRF --------------------------------------------------------------------------------------


def test_csrf_token_belongs_to_one_browser_and_one_key():
    signer = Signer(b"k" * 32, session_s=3600)
    token = signer.csrf_token("browser-1")
    assert signer.csrf_ok("browser-1", token)
    assert not signer.csrf_ok("browser-2", token)
    assert not signer.csrf_ok("browser-1", None)
    assert not signer.csrf_ok(None, token)
    assert not signer.csrf_ok("browser-1", "")
    assert not Signer(b"j" * 32, session_s=3600).csrf_ok("browser-1", token)


def test_a_csrf_token_is_no_session_and_a_session_no_csrf_token():
    signer = Signer(b"k" * 32, session_s=3600)
    session = signer.new_session("alice")
    assert not signer.csrf_ok(session, session)
    body = session.rpartition("|")[0]
    assert signer.session_user(f"{body}|{signer.csrf_token(body)}") is None


# -- rate limit ----------------------------------------------------------------------------------


def test_sign_ins_are_refused_after_too_many_failures_until_the_window_passes():
    clock = Clock()
    limiter = SignInLimiter(window_s=300, clock=clock)
    for _ in range(MAX_FAILURES - 1):
        limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == pytest.approx(300)
    assert limiter.blocked_for("10.0.0.2") == 0  # per address
    clock.t += 299
    assert limiter.blocked_for("10.0.0.1") == pytest.approx(1)
    clock.t += 2
    assert limiter.blocked_for("10.0.0.1") == 0


def test_a_good_sign_in_clears_the_failures_and_memory_is_bounded():
    limiter = SignInLimiter(max_addresses=3)
    for _ in range(MAX_FAILURES - 1):
        limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    assert limiter.blocked_for("a") == 0
    for address in "bcdef":
        limiter.failed(address)
    assert len(limiter._failures) == 3
