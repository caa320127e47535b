"""Change records of a site: one per user, the user's whole state, sealed with the site key.

A record is a small JSON envelope. Its header is readable (format, site, key id, the user's topic key,
version, door, whether it is a removal) and authenticated; the user's name, role, validity and face
templates are encrypted with AES-256-GCM, the header as associated data, so a broker operator or a
captured topic learns no name and no face, and a record altered in any byte, or sealed under another
site key, fails to open and is refused.

The user's topic key is an HMAC of their name (ASCII letters folded, as the gallery's NOCASE names are),
so the same person has the same key at every door without the name being visible.

Versions are hybrid logical clocks: milliseconds of wall time of the edit, or one more than the largest
version this door has seen, whichever is larger; equal versions are ordered by door id. A record
replaces what a door holds only when its (version, door) is larger, so duplicates and late records
change nothing and every door ends with the same winner of two concurrent edits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ApplianceError, ConfigError
from appliance.gallery.replica import TemplateState, UserState, Version

FORMAT = 1
"""Record format version; a record of another format is refused."""
KEY_BYTES = 32
NONCE_BYTES = 12
MAX_RECORD_BYTES = 1 << 20
"""Largest record accepted, bytes (a user with 50 templates is about 40 kB)."""


class RecordError(ApplianceError):
    """A change record that cannot be trusted or used: malformed, tampered, or sealed with another key."""


def _ascii_fold(name: str) -> str:
    """The name as SQLite's NOCASE compares it: ASCII letters lower-cased, every other character kept."""
    return name.translate({c: c + 32 for c in range(ord("A"), ord("Z") + 1)})


@dataclass(frozen=True)
class Record:
    """One opened (verified and decrypted) change record."""

    key: str
    version: Version
    base: Version | None
    """The version its author held when making it (None: the first record of this user)."""
    state: UserState
    """The user's whole state; `state.deleted` for a removal (a tombstone, name only)."""


class SiteKey:
    """The site's secret: seals and opens records, and names users' topics.

    Args:
        secret: 32 bytes, the same at every door of the site.
        site_id: the site's id, bound into every record.
    """

    def __init__(self, secret: bytes, site_id: str) -> None:
        if len(secret) != KEY_BYTES:
            raise ConfigError(f"a site key has {KEY_BYTES} bytes, this one {len(secret)}")
        self.site_id = site_id
        # Separate keys for separate jobs, derived from the one secret.
        self._aead = AESGCM(_derive(secret, b"facegate site records v1"))
        self._names = _derive(secret, b"facegate site user keys v1")
        self.kid = _derive(secret, b"facegate site key id v1").hex()[:16]
        """Key id: tells a record sealed under another site key from a tampered one."""

    def user_key(self, name: str) -> str:
        """The user's topic key: 32 hex digits, the same at every door, revealing nothing of the name."""
        digest = hmac.new(self._names, _ascii_fold(name).encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def seal(self, state: UserState, version: Version, base: Version | None = None) -> bytes:
        """The record (JSON bytes) for `state` at `version`, made on top of `base`."""
        key = self.user_key(state.name)
        header = self._header(key, version, base, state.deleted)
        nonce = os.urandom(NONCE_BYTES)
        data = self._aead.encrypt(nonce, json.dumps(_plain(state)).encode(), _aad(header))
        envelope = {**header, "nonce": _b64(nonce), "data": _b64(data)}
        return json.dumps(envelope, separators=(",", ":")).encode()

    def open(self, payload: bytes, topic_key: str | None = None) -> Record:
        """Verify and decrypt a record; `topic_key`: the key of the topic it came on, which it must name.

        Raises:
            RecordError: not a record, another format or site, another key, tampered, or its
                contents do not match its header.
        """
        if len(payload) > MAX_RECORD_BYTES:
            raise RecordError(f"record of {len(payload)} bytes is larger than {MAX_RECORD_BYTES}")
        try:
            envelope = json.loads(payload)
            header = {
                k: envelope[k] for k in ("v", "site", "kid", "user", "version", "door", "base", "deleted")
            }
            nonce, data = _unb64(envelope["nonce"]), _unb64(envelope["data"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise RecordError(f"not a FaceGate change record ({exc.__class__.__name__})") from None
        if header["v"] != FORMAT:
            raise RecordError(f"record format {header['v']!r} is not {FORMAT}; update FaceGate at every door")
        if header["site"] != self.site_id:
            raise RecordError(f"record of site {header['site']!r}, this door is in {self.site_id!r}")
        if header["kid"] != self.kid:
            raise RecordError(
                f"record sealed with another site key (key id {str(header['kid'])[:16]}, ours {self.kid}); "
                "every door of a site needs the same [site] key_file"
            )
        if topic_key is not None and header["user"] != topic_key:
            raise RecordError("record names another user than its topic (moved to another topic)")
        try:
            plain = self._aead.decrypt(nonce, data, _aad(header))
        except InvalidTag:
            raise RecordError("record failed authentication: it was altered after it was sealed") from None
        try:
            state = _state(json.loads(plain), bool(header["deleted"]))
            version = Version(int(header["version"]), str(header["door"]))
            b = header["base"]
            base = None if b is None else Version(int(b[0]), str(b[1]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise RecordError(f"record contents are malformed ({exc})") from None
        if self.user_key(state.name) != header["user"]:
            raise RecordError("record's user does not match its key")
        return Record(header["user"], version, base, state)

    def _header(self, key: str, version: Version, base: Version | None, deleted: bool) -> dict[str, Any]:
        return {
            "v": FORMAT,
            "site": self.site_id,
            "kid": self.kid,
            "user": key,
            "version": version.clock,
            "door": version.door,
            "base": None if base is None else [base.clock, base.door],
            "deleted": deleted,
        }


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _plain(state: UserState) -> dict[str, Any]:
    if state.deleted:
        return {"name": state.name}
    return {
        "name": state.name,
        "role": state.role,
        "active": state.active,
        "valid_from": state.valid_from,
        "valid_until": state.valid_until,
        "templates": [
            {"model": t.model_id, "quality": t.quality, "embedding": _b64(t.embedding)}
            for t in state.templates
        ],
    }


def _state(plain: dict[str, Any], deleted: bool) -> UserState:
    name = plain["name"]
    if not isinstance(name, str):
        raise ValueError("name is not text")
    if deleted:
        return UserState.removed(name)
    templates = tuple(
        TemplateState(
            str(t["model"]), _unb64(t["embedding"]), None if t["quality"] is None else float(t["quality"])
        )
        for t in plain["templates"]
    )
    vf, vu = plain["valid_from"], plain["valid_until"]
    return UserState(
        name=name,
        role=str(plain["role"]),
        active=bool(plain["active"]),
        valid_from=None if vf is None else float(vf),
        valid_until=None if vu is None else float(vu),
        templates=templates,
    )


# -- the key file -------------------------------------------------------------------------------


def make_key_file(path: Path) -> None:
    """Write a new random site key to `path` (refusing to overwrite one), mode 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; a site key is never overwritten: choose a new file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(KEY_BYTES).hex() + "\n")


def read_key_file(path: Path | str) -> bytes:
    """The site key from `path`: 64 hex digits on the first line, the file readable by its owner only.

    Raises:
        ConfigError: missing, unreadable, readable by group or others, or not a key.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").split("\n", 1)[0].strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"site.key_file {path}: cannot read it ({why}); make one with `facegate sync --make-key FILE`"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"site.key_file {path}: readable by others (mode {stat.S_IMODE(mode):o}); "
            f"`chmod 600 {path}` and own it by the service user"
        )
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise ConfigError(f"site.key_file {path}: the first line must be {KEY_BYTES * 2} hex digits")
    return secret
