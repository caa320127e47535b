"""The gallery's side of site replication: local changes stamped as versioned records, remote records
applied, in the gallery's own transactions (tables of schema m003).

Every change to a user, made by any process (the CLI, the door's enrol button), marks the user's name
in `site_dirty` (SQLite triggers). `stamp_local` turns each marked user into this door's record of their
whole state at a new version; `apply` takes another door's record when its version is newer than the
one held. Sealing (encryption) is the caller's: this module sees plain states and opaque payloads.

Ordering: a version is (clock, door); clock is a hybrid logical clock in milliseconds (the wall time
of the edit, or one more than the largest clock held, whichever is larger), and equal clocks are
ordered by door id.
Each user's record replaces what is held only when its version is larger: duplicates and late records
change nothing, and two doors that edited the same user concurrently both end with the larger version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from appliance.errors import GalleryError
from appliance.gallery.store import Gallery, _check_embeddings

log = logging.getLogger(__name__)


class Version(NamedTuple):
    """A record's version: `clock` (hybrid logical clock, ms) first, then `door` (its author) on a tie."""

    clock: int
    door: str


@dataclass(frozen=True)
class TemplateState:
    """One face template as replicated: its model, float32 little-endian bytes, and shot quality."""

    model_id: str
    embedding: bytes
    quality: float | None


@dataclass(frozen=True)
class UserState:
    """A user's whole replicated state; `deleted` for a removal (a tombstone: the name only)."""

    name: str
    role: str = "user"
    active: bool = True
    valid_from: float | None = None
    valid_until: float | None = None
    templates: tuple[TemplateState, ...] = ()
    deleted: bool = False

    @staticmethod
    def removed(name: str) -> UserState:
        """The tombstone of `name`."""
        return UserState(name=name, deleted=True)


class Held(NamedTuple):
    """The record this door holds for one user: `base` is the version its author held when making it."""

    name: str
    deleted: bool
    version: Version
    base: Version | None


class Arriving(NamedTuple):
    """Another door's verified record of one user, to apply."""

    key: str
    version: Version
    state: UserState
    payload: bytes
    base: Version | None


class Outgoing(NamedTuple):
    """A record of this door's the broker has not acknowledged yet."""

    key: str
    version: Version
    payload: bytes


class Removal(NamedTuple):
    """Where a user's removal stands: its version (None: not stamped yet, `facegate sync` has not seen
    it), whether the broker has it, and the known doors that have not applied it yet."""

    name: str
    version: Version | None
    published: bool
    pending: list[str]


Seal = Callable[[UserState, Version, Version | None], bytes]
"""Makes the record payload of a state at a version, made on top of a base version (the site key's `seal`)."""


class Replica:
    """Site replication on one gallery.

    Args:
        gallery: the door's gallery (the same file the door process reads).
        door: this door's id.
        key_of: a user name -> their site-wide key (an HMAC of the name under the site key).
        seal: makes a record's payload.
        model_id: the door's embedder model; a record with templates of another model is refused.
        clock: wall clock, epoch seconds.
    """

    def __init__(
        self,
        gallery: Gallery,
        door: str,
        key_of: Callable[[str], str],
        seal: Seal,
        model_id: str,
    ) -> None:
        self.g = gallery
        self.door = door
        self.key_of = key_of
        self.seal = seal
        self.model_id = model_id
        self.clock = gallery._clock  # the gallery's clock stamps both its events and the site's versions

    # -- local changes -------------------------------------------------------------------------

    def join(self, site: str) -> int:
        """Make this gallery a member of `site` (from now on every change is recorded) and mark the users
        this door has no record of (enrolled before it joined) to be published; returns how many.

        Raises:
            GalleryError: the gallery belongs to another site (its users would be mixed with this one's).
        """
        with self.g._write(counts=False):
            row = self.g.db.execute("SELECT site FROM site_membership WHERE id = 1").fetchone()
            if row is not None and row[0] != site:
                raise GalleryError(
                    f"{self.g.path} belongs to site {row[0]!r}, not {site!r}: set [site] site_id back, or "
                    "give this door a new gallery file (it receives the new site's users)."
                )
            self.g.db.execute(
                "INSERT OR REPLACE INTO site_membership (id, site, door, joined) VALUES (1, ?, ?, ?)",
                [site, self.door, self.clock()],
            )
        return self._mark_unpublished_users()

    def _mark_unpublished_users(self) -> int:
        with self.g._write(counts=False):
            names = [r[0] for r in self.g.db.execute("SELECT name FROM users").fetchall()]
            held = {r[0] for r in self.g.db.execute("SELECT name FROM site_records WHERE deleted = 0")}
            new = [n for n in names if n not in held]
            self.g.db.conn.executemany(
                "INSERT OR IGNORE INTO site_dirty (name) VALUES (?)", [(n,) for n in new]
            )
        return len(new)

    def stamp_local(self) -> int:
        """Give every user changed here since the last call a record at a new version; returns how many."""
        with self.g._read():
            # Looked at often: a read, so that the write lock is only taken when there is work.
            if self.g.db.execute("SELECT 1 FROM site_dirty LIMIT 1").fetchone() is None:
                return 0
        with self.g._write(counts=False):
            rows = self.g.db.execute("SELECT name, changed FROM site_dirty ORDER BY changed").fetchall()
            return sum(self._stamp(name, changed) for name, changed in rows)

    def _stamp(self, name: str, changed: float | None) -> bool:
        """(In a transaction.) This door's record of `name`'s current state, changed at `changed` (epoch
        s; None: now); False if there is nothing new to say."""
        db = self.g.db
        db.execute("DELETE FROM site_dirty WHERE name = ?", [name])
        user = self.g._find_user(name)
        key = self.key_of(user.name if user else name)
        held = self._held(key)
        if user is None:
            if held is not None and held.deleted:
                return False  # already removed: nothing new to say
            state = UserState.removed(held.name if held else name)
        else:
            state = self._state_of(user.id)
        # The time of the edit itself, not of this stamp: the later of two edits at two doors wins.
        when = self.clock() if changed is None else changed
        version = Version(max(int(when * 1000), self._max_clock() + 1), self.door)
        base = held.version if held else None
        self._store(key, state, version, base, self.seal(state, version, base), published=False)
        log.info(
            "site: %s %s here, version %d",
            "removal of" if state.deleted else "change to",
            state.name,
            version.clock,
        )
        return True

    def _state_of(self, user_id: int) -> UserState:
        row = self.g.db.execute(
            "SELECT name, role, active, valid_from, valid_until FROM users WHERE id = ?", [user_id]
        ).fetchone()
        templates = tuple(TemplateState(*t) for t in self._templates_of(user_id))
        return UserState(row[0], row[1], bool(row[2]), row[3], row[4], templates)

    def _templates_of(self, user_id: int) -> list[tuple[str, bytes, float | None]]:
        """(model_id, embedding, quality) of one user's templates, in enrolment order."""
        return [
            (m, bytes(e), q)
            for m, e, q in self.g.db.execute(
                "SELECT model_id, embedding, quality FROM templates WHERE user_id = ? ORDER BY id", [user_id]
            )
        ]

    # -- remote records ------------------------------------------------------------------------

    def apply(
        self, key: str, version: Version, state: UserState, payload: bytes, base: Version | None = None
    ) -> str:
        """Apply one record (see `apply_all`)."""
        return self.apply_all([Arriving(key, version, state, payload, base)])[0]

    def apply_all(self, records: list[Arriving]) -> list[str]:
        """Apply other doors' verified records, in order, in one transaction (one sync to disk).

        Two records are a conflict when neither author had seen the other's (the winner's base is not
        the loser, nor later); the larger version wins at every door, and the conflict is logged.

        Returns:
            "applied"; "duplicate" (this version is held already); "stale" (a newer version is held,
            which is then queued to be published again, so the broker keeps the newest); or
            "refused: WHY" (the record is valid but cannot be used here; nothing was changed), one
            per record.
        """
        with self.g._write():
            return [self._apply_one(*r) for r in records]

    def _apply_one(
        self, key: str, version: Version, state: UserState, payload: bytes, base: Version | None
    ) -> str:
        """(In a transaction.) One record; see `apply_all`."""
        # A change made here that is not stamped yet is older or concurrent: stamp it first, so it
        # competes by its version rather than being overwritten unseen.
        dirty = self.g.db.execute(
            "SELECT name, changed FROM site_dirty WHERE name = ?", [state.name]
        ).fetchone()
        if dirty is not None:
            self._stamp(dirty[0], dirty[1])
        held = self._held(key)
        if held is not None:
            if held.version == version:
                return "duplicate"
            if held.version > version:
                if held.base is None or held.base < version:
                    self._conflict(state.name, held.version, version)
                # The broker may hold this older record now: put the newer one back.
                self.g.db.execute("UPDATE site_records SET published = 0 WHERE key = ?", [key])
                return "stale"
            if base is None or base < held.version:
                self._conflict(state.name, version, held.version)
        self.g.db.execute("SAVEPOINT site_record")
        try:
            what = self._write_state(state, version)
        except GalleryError as exc:
            self.g.db.execute("ROLLBACK TO site_record")
            self.g.db.execute("RELEASE site_record")
            reason = f"refused {state.name}'s record from door {version.door}: {exc}"
            self.g._event("site", None, state.name, reason=reason)
            log.error("site: %s", reason)
            return f"refused: {exc}"
        self.g.db.execute("RELEASE site_record")
        self.g.db.execute("DELETE FROM site_dirty WHERE name = ?", [state.name])
        self._store(key, state, version, base, payload, published=True)
        self.g._event(
            "site", None, state.name, reason=f"{what} from door {version.door} (version {version.clock})"
        )
        return "applied"

    def _conflict(self, name: str, kept: Version, lost: Version) -> None:
        reason = (
            f"conflict on {name}: kept door {kept.door}'s version {kept.clock} over door {lost.door}'s "
            f"{lost.clock} (the larger clock wins, then the door id)"
        )
        log.warning("site: %s", reason)
        self.g._event("site", None, name, reason=reason)

    def _write_state(self, state: UserState, version: Version) -> str:
        """(In a transaction.) Make the gallery hold `state`; what was done, in words."""
        db = self.g.db
        user = self.g._find_user(state.name)
        if state.deleted:
            if user is None:
                return "removal (not here)"
            db.execute("DELETE FROM users WHERE id = ?", [user.id])
            return "removed"
        name, vf, vu = self.g._check_user_fields(state.name, state.role, state.valid_from, state.valid_until)
        foreign = sorted({t.model_id for t in state.templates} - {self.model_id})
        if foreign:
            raise GalleryError(
                f"it has templates of another model ({', '.join(foreign)}, this door runs {self.model_id}) "
                "and cannot be recognised until re-enrolled"
            )
        blobs: list[bytes] = []
        if state.templates:
            sizes = {len(t.embedding) for t in state.templates}
            if len(sizes) != 1 or min(sizes) % 4:
                raise GalleryError(f"its templates have sizes {sorted(sizes)} bytes (damaged)")
            matrix = np.stack([np.frombuffer(t.embedding, dtype="<f4") for t in state.templates])
            blobs, dim, _ = _check_embeddings(matrix, self.model_id, None)
            self.g._check_dim(self.model_id, dim)
        fields = [name, state.role, int(state.active), vf, vu]
        if user is None:
            user_id = int(
                db.execute(
                    "INSERT INTO users (name, role, active, valid_from, valid_until, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [*fields, self.clock()],
                ).lastrowid
            )
            what = "enrolled"
        else:
            user_id = user.id
            db.execute(
                "UPDATE users SET name = ?, role = ?, active = ?, valid_from = ?, valid_until = ?"
                " WHERE id = ?",
                [*fields, user_id],
            )
            what = "updated"
        current = self._templates_of(user_id)
        wanted = [(t.model_id, b, t.quality) for t, b in zip(state.templates, blobs, strict=True)]
        if current != wanted:
            db.execute("DELETE FROM templates WHERE user_id = ?", [user_id])
            now = self.clock()
            db.conn.executemany(
                "INSERT INTO templates (user_id, embedding, model_id, quality, created)"
                " VALUES (?, ?, ?, ?, ?)",
                [(user_id, b, m, q, now) for m, b, q in wanted],
            )
        return f"{what} ({len(wanted)} templates)"

    # -- the records held ------------------------------------------------------------------------

    def _held(self, key: str) -> Held | None:
        """The record held for `key`, or None."""
        row = self.g.db.execute(
            "SELECT name, deleted, clock, door, base_clock, base_door FROM site_records WHERE key = ?",
            [key],
        ).fetchone()
        if row is None:
            return None
        base = None if row[4] is None else Version(row[4], row[5])
        return Held(row[0], bool(row[1]), Version(row[2], row[3]), base)

    def _max_clock(self) -> int:
        row = self.g.db.execute("SELECT MAX(clock) FROM site_records").fetchone()
        return int(row[0] or 0)

    def _store(
        self,
        key: str,
        state: UserState,
        version: Version,
        base: Version | None,
        payload: bytes,
        published: bool,
    ) -> None:
        self.g.db.execute(
            """INSERT OR REPLACE INTO site_records
               (key, name, clock, door, base_clock, base_door, deleted, payload, published, acked, applied)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                key,
                state.name,
                version.clock,
                version.door,
                None if base is None else base.clock,
                None if base is None else base.door,
                int(state.deleted),
                payload,
                int(published),
                0 if state.deleted else 1,  # a removal is acknowledged to the site once it is done here
                self.clock(),
            ],
        )

    def outbox(self) -> list[Outgoing]:
        """Records to publish (this door's own, and newer ones to put back on the broker), oldest first."""
        with self.g._read():
            rows = self.g.db.execute(
                "SELECT key, clock, door, payload FROM site_records WHERE published = 0 ORDER BY clock"
            ).fetchall()
        return [Outgoing(k, Version(c, d), bytes(p)) for k, c, d, p in rows]

    def mark_published(self, key: str, version: Version) -> None:
        """The broker has this version of `key` (a newer one stamped meanwhile stays queued)."""
        with self.g._write(counts=False):
            self.g.db.execute(
                "UPDATE site_records SET published = 1 WHERE key = ? AND clock = ? AND door = ?",
                [key, version.clock, version.door],
            )

    def republish_except(self, keys: set[str]) -> int:
        """Queue every record held whose key is not in `keys` (those the broker has) to be published
        again; returns how many."""
        with self.g._write(counts=False):
            held = [r[0] for r in self.g.db.execute("SELECT key FROM site_records WHERE published = 1")]
            missing = [(k,) for k in held if k not in keys]
            self.g.db.conn.executemany("UPDATE site_records SET published = 0 WHERE key = ?", missing)
        return len(missing)

    # -- removals: who has applied them ------------------------------------------------------------

    def acks_to_send(self) -> list[tuple[str, int]]:
        """(key, clock) of removals done here that the site has not been told of yet."""
        with self.g._read():
            return [
                (k, c)
                for k, c in self.g.db.execute(
                    "SELECT key, clock FROM site_records WHERE deleted = 1 AND acked = 0"
                )
            ]

    def mark_acked(self, key: str, clock: int) -> None:
        """The broker has this door's acknowledgement of the removal of `key` at `clock`."""
        with self.g._write(counts=False):
            self.g.db.execute("UPDATE site_records SET acked = 1 WHERE key = ? AND clock = ?", [key, clock])

    def note_ack(self, key: str, door: str, clock: int) -> None:
        """Door `door` has applied the removal of `key` at `clock`."""
        with self.g._write(counts=False):
            self.g.db.execute(
                "INSERT OR REPLACE INTO site_acks (key, door, clock) VALUES (?, ?, ?)", [key, door, clock]
            )

    def note_door(self, door: str, state: str | None) -> None:
        """A door of the site announced itself ("online" or "offline"), or was retired (None)."""
        with self.g._write(counts=False):
            if state is None:
                self.g.db.execute("DELETE FROM site_doors WHERE door = ?", [door])
                return
            self.g.db.execute(
                "INSERT OR REPLACE INTO site_doors (door, state, seen) VALUES (?, ?, ?)",
                [door, state, self.clock()],
            )


def site_removal(gallery: Gallery, name: str) -> Removal | None:
    """Where the removal of `name` stands at the site, as this door knows it; None if not removed.

    Pending doors are those that announced themselves on the site and have not acknowledged this
    removal (or a later one); a door that never came online is not known and so not listed.
    """
    with gallery._read():
        if gallery._find_user(name) is not None:
            return None
        row = gallery.db.execute(
            "SELECT key, clock, door, name, published FROM site_records"
            " WHERE name = ? COLLATE NOCASE AND deleted = 1",
            [name.strip()],
        ).fetchone()
        if row is None:
            dirty = gallery.db.execute(
                "SELECT name FROM site_dirty WHERE name = ?", [name.strip()]
            ).fetchone()
            return None if dirty is None else Removal(dirty[0], None, False, [])
        key, clock, door, stored, published = row
        doors = [r[0] for r in gallery.db.execute("SELECT door FROM site_doors ORDER BY door")]
        acked = {
            r[0]
            for r in gallery.db.execute(
                "SELECT door FROM site_acks WHERE key = ? AND clock >= ?", [key, clock]
            )
        }
    return Removal(stored, Version(clock, door), bool(published), [d for d in doors if d not in acked])
