"""The web page's security parts, standard library only: password hashes, session and CSRF tokens,
the secret key file and the sign-in rate limit.

- Passwords: scrypt (hashlib.scrypt, n=2**14, r=8, p=1: 16 MiB and about 50 ms a try on a desktop CPU,
  a few times that on a Pi), a random 16-byte salt each, compared in constant time. The password file
  holds one `name:scrypt$n$r$p$salt$hash` line per admin (base64 salt and hash), mode 0600.
- Sessions: a cookie `name|expires|nonce|hmac` signed with HMAC-SHA256 under a 32-byte secret key kept
  in its own file (mode 0600, created on first start); expiry is inside the signed text, so a cookie
  cannot be extended, and changing the key signs everyone out.
- CSRF: every form carries a token that is the HMAC of a random per-browser cookie value; a POST whose
  token does not match that cookie is refused (a page elsewhere can make the browser send the cookie,
  but cannot read it to compute the token).
- Sign-in: at most MAX_FAILURES failed tries per client address in FAILURE_WINDOW_S; then every try,
  right or wrong, is refused until the window has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from appliance.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost: 128 * r * n = 16 MiB of memory per hash (OWASP's minimum for scrypt is n=2**17 with
r=8 on servers; 2**14 keeps a sign-in under a second on a Pi 3 while costing an attacker 16 MiB a guess)."""
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_LEN = 10
"""Shortest admin password accepted by `facegate web --set-password`."""
MAX_PASSWORD_LEN = 1024
"""Longest password hashed: a megabyte of "password" would only cost CPU."""

MAX_FAILURES = 5
"""Failed sign-ins from one address within FAILURE_WINDOW_S before all its sign-ins are refused."""
FAILURE_WINDOW_S = 300.0
"""Seconds a failed sign-in counts against its address."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The scrypt hash of `password` with a fresh random salt, as `scrypt$n$r$p$salt$hash`."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` hashes to `stored` (a hash_password result); False for a malformed `stored`."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if len(password) > MAX_PASSWORD_LEN:
        raise ValueError("password too long")
    # maxmem above the 128*r*n bytes scrypt needs (hashlib's default limit is 32 MiB).
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20), dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_new_password(password: str) -> None:
    """Refuse a password too short or too long to be an admin's, with what to do."""
    if len(password) < MIN_PASSWORD_LEN:
        raise ConfigError(
            f"the password must have at least {MIN_PASSWORD_LEN} characters; choose a longer one."
        )
    if len(password) > MAX_PASSWORD_LEN:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD_LEN} characters.")


# -- the password file -------------------------------------------------------------------------------


def _check_admin_name(name: str) -> str:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(
            f"admin name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.' (it is shown in events)."
        )
    return name


def read_passwords(path: Path) -> dict[str, str]:
    """Admin name -> stored hash, from the password file; an empty dict when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the admin password file ({exc.strerror or exc}); check its owner "
            "and permissions (it should be 0600, owned by the user running `facegate web`)."
        ) from None
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not stored.startswith("scrypt$"):
            raise ConfigError(
                f"{path}:{number}: not a `name:scrypt$...` line; set the password again with "
                "`facegate web --set-password`."
            )
        out[name] = stored
    return out


def set_password(path: Path, name: str, password: str) -> None:
    """Store (or replace) admin `name`'s password hash in the password file, written 0600 atomically."""
    _check_admin_name(name)
    check_new_password(password)
    entries = read_passwords(path)
    entries[name] = hash_password(password)
    text = "".join(f"{n}:{h}\n" for n, h in entries.items())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_secret(path: Path) -> bytes:
    """The 32-byte signing key in `path`, created (mode 0600, never replaced) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the web secret key ({exc.strerror or exc}); check its owner and "
            "permissions, or delete it to make a new one (that signs every admin out)."
        ) from None
    if len(key) < KEY_BYTES:
        raise ConfigError(
            f"{path}: the web secret key is {len(key)} bytes, not {KEY_BYTES}; delete the file and start "
            "`facegate web` again to make a new one (that signs every admin out)."
        )
    return key


# -- sessions and CSRF ---------------------------------------------------------------------------------


class Signer:
    """Session cookies and CSRF tokens under one secret key.

    Args:
        key: the secret (load_or_create_secret).
        session_s: how long a session lasts after sign-in, seconds.
        clock: wall clock, epoch seconds (injectable for tests).
    """

    def __init__(self, key: bytes, session_s: float, clock: Callable[[], float] = time.time):
        self._key, self.session_s, self._clock = key, session_s, clock

    def _mac(self, purpose: str, text: str) -> str:
        # The purpose is part of the signed text, so a CSRF token can never pass as a session.
        return hmac.new(self._key, f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()

    def new_session(self, name: str) -> str:
        """A signed session token for admin `name`, valid for session_s from now."""
        _check_admin_name(name)
        body = f"{name}|{int(self._clock() + self.session_s)}|{secrets.token_hex(8)}"
        return f"{body}|{self._mac('session', body)}"

    def session_user(self, token: str | None) -> str | None:
        """The admin a session token was made for, or None if it is missing, forged or expired."""
        if not token:
            return None
        body, sep, mac = token.rpartition("|")
        if not sep or not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        parts = body.split("|")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        if int(parts[1]) <= self._clock():
            return None
        return parts[0]

    def csrf_token(self, browser_id: str) -> str:
        """The CSRF token forms carry for the browser whose CSRF cookie is `browser_id`."""
        return self._mac("csrf", browser_id)

    def csrf_ok(self, browser_id: str | None, token: str | None) -> bool:
        """True if `token` is the CSRF token of the cookie `browser_id` (both present)."""
        if not browser_id or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(browser_id))


def new_browser_id() -> str:
    """A random value for the CSRF cookie."""
    return secrets.token_urlsafe(24)


class SignInLimiter:
    """Counts failed sign-ins per client address; `blocked_for` says how long one must wait.

    Thread-safe (the server may run sign-ins in a thread pool). Memory is bounded: an address's
    failures are forgotten after `window_s`, and at most `max_addresses` are tracked (the oldest go).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ):
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may try to sign in again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-self.max_failures] + self.window_s - now)

    def failed(self, address: str) -> None:
        """Count one failed sign-in from `address`."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            times.append(now)
            self._failures[address] = times
            while len(self._failures) > self._max_addresses:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, address: str) -> None:
        """Forget `address`'s failures after a good sign-in."""
        with self._lock:
            self._failures.pop(address, None)
