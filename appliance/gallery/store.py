"""SQLite gallery: users, their face templates (float32 BLOBs) and the audit event log.

One file, opened through sqlite-utils. Several processes may use it at once (the service reads
templates and logs events while the CLI enrols): WAL lets readers and one writer work together,
and a busy timeout makes a writer wait for another instead of failing at once.

Times are wall-clock seconds since the Unix epoch (float, UTC), as `time.time()` gives them.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sqlite_utils import Database

from appliance.domain import Templates
from appliance.errors import GalleryError
from appliance.gallery.schema import EVENT_KINDS, MIGRATION_STEPS, MIGRATIONS, ROLES, SCHEMA_VERSION

MAX_NAME_LEN = 64
_NORM_TOLERANCE = 1e-3  # float32 rounding after normalisation is ~1e-7; 1e-3 catches raw vectors.


@dataclass(frozen=True)
class User:
    """A person who may be let in.

    Attributes:
        id: database id, stable across renames.
        name: unique, case-insensitively.
        role: "user" or "admin".
        active: False suspends the user without deleting their templates.
        valid_from, valid_until: epoch seconds bounding when they are let in (None: unbounded);
            valid_until itself is already outside.
        created: epoch seconds.
        templates: number of stored templates (all models).
    """

    id: int
    name: str
    role: str
    active: bool
    valid_from: float | None
    valid_until: float | None
    created: float
    templates: int

    def is_valid_at(self, now: float) -> bool:
        """True if the user is active and `now` (epoch seconds) is within their validity."""
        return (
            self.active
            and (self.valid_from is None or self.valid_from <= now)
            and (self.valid_until is None or now < self.valid_until)
        )


@dataclass(frozen=True)
class Event:
    """One row of the audit log; `time` in epoch seconds, `score` a cosine similarity or None."""

    id: int
    time: float
    kind: str
    user_id: int | None
    name: str | None
    score: float | None
    reason: str


Timestamp = float | datetime | None
"""Epoch seconds, an aware datetime (a naive one is taken as local time), or None."""


class Gallery:
    """The gallery database. Use as a context manager, or call `close()`.

    Args:
        path: database file, created with its schema if missing; ":memory:" for a throwaway one.
        busy_timeout_s: seconds a write waits for another process's write to finish before
            giving up with "locked".
        clock: wall clock for `created` and event times (epoch seconds); injectable for tests.
        create: False for commands that only read: a missing file is then an error (a mistyped
            path must not silently become a new, empty gallery).

    Raises:
        GalleryError: the file cannot be opened, is locked, is not a FaceGate gallery, is damaged,
            or was written by a newer FaceGate. The file is never modified in these cases.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.path = str(path)
        if not create and self.path != ":memory:" and not Path(self.path).exists():
            raise GalleryError(
                f"there is no gallery at {self.path}: check --db or [gallery] path "
                "(`facegate enroll` creates it with the first user)."
            )
        self._clock = clock
        # The service may log events from a thread other than the one that opened the gallery;
        # one lock serialises use of the single connection.
        self._lock = threading.RLock()
        self._local_writes = 0
        with self._errors():
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False)
        try:
            with self._errors():
                self.db = Database(self._conn, execute_plugins=False)
                self._refuse_foreign()
                self._configure()
                self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _refuse_foreign(self) -> None:
        """Refuse an SQLite file of another program before anything (WAL included) is written to it."""
        # Reading the table list is the first access to the file: a non-database fails here.
        tables = set(self.db.table_names())
        if tables and MIGRATIONS.migrations_table not in tables:
            raise GalleryError(
                f"{self.path} is an SQLite database but not a FaceGate gallery (it has tables "
                f"{', '.join(sorted(tables))}); set gallery.path to a new file. It was left untouched."
            )

    def _configure(self) -> None:
        self.db.enable_wal()
        # WAL's default synchronous=NORMAL can lose the last transactions on a power cut. A door
        # appliance is unplugged without warning, and an enrolment reported done must survive
        # that, so every commit is synced to the SD card (FULL). Writes are rare; the cost is small.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")

    def _migrate(self) -> None:
        tables = set(self.db.table_names())
        applied = [m.name for m in MIGRATIONS.applied(self.db)]
        known = [step.__name__ for step in MIGRATION_STEPS]
        unknown = [name for name in applied if name not in known]
        if unknown or self.db.execute("PRAGMA user_version").fetchone()[0] > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path} was written by a newer FaceGate (schema migration {', '.join(unknown) or '?'} "
                f"is unknown here); upgrade FaceGate, or restore a backup made by this version."
            )
        if not applied and tables - {MIGRATIONS.migrations_table}:
            raise GalleryError(
                f"{self.path} is an SQLite database but not a FaceGate gallery (it has tables "
                f"{', '.join(sorted(tables))}); set gallery.path to a new file. It was left untouched."
            )
        if len(applied) < SCHEMA_VERSION:
            MIGRATIONS.apply(self.db)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """How many schema migrations have been applied to this file."""
        with self._read():
            return len(MIGRATIONS.applied(self.db))

    def revision(self) -> tuple[int, int]:
        """A value that changes whenever users or templates change, in this or another process.

        The service compares it between frames and reloads `templates_matrix` when it differs.
        (Event writes by other processes change it too; a spurious reload is only a little work.)
        """
        with self._read():
            return self.db.execute("PRAGMA data_version").fetchone()[0], self._local_writes

    def integrity_problems(self) -> list[str]:
        """Run SQLite's full integrity check (reads the whole file): [] when sound, else the damage found."""
        with self._read():
            rows = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def backup(self, dest: Path | str) -> None:
        """Copy the gallery to `dest` (a new file), consistently, even while the service is using it."""
        dest = Path(dest)
        if dest.exists():
            raise GalleryError(f"{dest} already exists; choose a new file name for the backup.")
        with self._read():
            target = sqlite3.connect(dest)
            try:
                self._conn.backup(target)
            finally:
                target.close()

    # -- users -----------------------------------------------------------------------------

    def add_user(
        self, name: str, role: str = "user", valid_from: Timestamp = None, valid_until: Timestamp = None
    ) -> User:
        """Create a user without templates (they cannot be recognised until templates are added)."""
        name, vf, vu = self._check_user_fields(name, role, valid_from, valid_until)
        with self._write():
            self._refuse_existing(name)
            user_id = self._insert_user(name, role, vf, vu)
            self._event("add_user", user_id, name, reason=f"role {role}")
        return self.user(name)

    def enrol(
        self,
        name: str,
        embeddings: np.ndarray,
        model_id: str,
        qualities: Sequence[float] | None = None,
        *,
        role: str = "user",
        valid_from: Timestamp = None,
        valid_until: Timestamp = None,
    ) -> User:
        """Create a user and all their templates in one transaction: all of it is stored, or none.

        Args:
            name: the new user's name; refused if already taken (any letter case).
            embeddings: (N, D) L2-normalised embeddings, N >= 1.
            model_id: the embedder's model_id; only the same model's templates are compared.
            qualities: N quality scores of the shots (any scale; kept for review), or None.
            role, valid_from, valid_until: as for `add_user`.

        Returns:
            The new User. When this returns, the enrolment is on disk (synchronous=FULL).
        """
        name, vf, vu = self._check_user_fields(name, role, valid_from, valid_until)
        blobs, dim, quals = _check_embeddings(embeddings, model_id, qualities)
        with self._write():
            self._store_new_user(name, role, vf, vu, blobs, dim, model_id, quals, "")
        return self.user(name)

    def enrol_at_door(
        self,
        default_name: str,
        embeddings: np.ndarray,
        model_id: str,
        qualities: Sequence[float] | None = None,
    ) -> User:
        """Enrol the person captured at the door under the staged name and role, else `default_name`.

        Taking the staged name and storing the user are one transaction: when the enrolment fails
        (the name was taken meanwhile, a full disk), the staged name stays staged.
        """
        blobs, dim, quals = _check_embeddings(embeddings, model_id, qualities)
        with self._write():
            staged = self._staged_row()
            name, role = staged or (default_name, "user")
            name, _, _ = self._check_user_fields(name, role, None, None)
            existing = self._find_user(name)
            if existing is not None and staged is not None:
                raise GalleryError(
                    f"the name staged for the door, {existing.name!r}, was taken meanwhile; stage "
                    "another with `facegate enroll NAME --at-door` and enrol again."
                )
            self._store_new_user(name, role, None, None, blobs, dim, model_id, quals, " at the door")
            self.db.execute("DELETE FROM staged_enrolment")
        return self.user(name)

    def add_templates(
        self, name: str, embeddings: np.ndarray, model_id: str, qualities: Sequence[float] | None = None
    ) -> int:
        """Add (N, D) embeddings to an existing user (e.g. re-enrolment after a model change).

        Returns the number of templates added.
        """
        blobs, dim, quals = _check_embeddings(embeddings, model_id, qualities)
        with self._write():
            user = self._get_user(name)
            self._check_dim(model_id, dim)
            self._insert_templates(user.id, blobs, model_id, quals)
            self._event(
                "add_templates", user.id, user.name, reason=f"{len(blobs)} templates, model {model_id}"
            )
        return len(blobs)

    def has_active_admin(self, now: float | None = None) -> bool:
        """True if some admin is active and valid at `now` (epoch s, default: the clock)."""
        moment = self._clock() if now is None else now
        return any(u.role == "admin" and u.is_valid_at(moment) for u in self.users())

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._read():
            return [_user(row) for row in self.db.query(_USER_SELECT + " GROUP BY u.id ORDER BY u.name")]

    def user(self, name: str) -> User:
        """The user called `name` (any letter case); GalleryError if there is none."""
        with self._read():
            return self._get_user(name)

    def __contains__(self, name: object) -> bool:
        """`"ann" in gallery`: is there a user of that name (any letter case)?"""
        if not isinstance(name, str):
            return False
        with self._read():
            return self._find_user(name) is not None

    def rename(self, old: str, new: str) -> User:
        """Rename a user, keeping their templates and history."""
        new = _check_name(new)
        with self._write():
            user = self._get_user(old)
            other = self._find_user(new)
            if other is not None and other.id != user.id:
                raise GalleryError(
                    f"cannot rename {user.name!r} to {new!r}: that name is taken; choose another."
                )
            self.db.execute("UPDATE users SET name = ? WHERE id = ?", [new, user.id])
            self._event("rename", user.id, new, reason=f"was {user.name}")
        return self.user(new)

    def remove(self, name: str) -> int:
        """Delete a user and all their templates (their past events stay). Returns templates deleted."""
        with self._write():
            user = self._get_user(name)
            deleted = self.db.execute("DELETE FROM templates WHERE user_id = ?", [user.id]).rowcount
            self.db.execute("DELETE FROM users WHERE id = ?", [user.id])
            self._event("remove", user.id, user.name, reason=f"{deleted} templates deleted")
        return deleted

    def set_active(self, name: str, active: bool) -> User:
        """Suspend (False) or restore (True) a user without touching their templates."""
        with self._write():
            user = self._get_user(name)
            self.db.execute("UPDATE users SET active = ? WHERE id = ?", [int(active), user.id])
            self._event("activate" if active else "deactivate", user.id, user.name)
        return self.user(name)

    def set_role(self, name: str, role: str, by: str = "") -> User:
        """Make a user an "admin" or a plain "user"; the "set_role" event names the old role and `by`
        (who changed it, e.g. "web admin ann"). One transaction: the change and its event or neither."""
        if role not in ROLES:
            raise GalleryError(f"role {role!r} is not known; use one of {', '.join(ROLES)}.")
        with self._write():
            user = self._get_user(name)
            self.db.execute("UPDATE users SET role = ? WHERE id = ?", [role, user.id])
            reason = f"{user.role} -> {role}" + (f" by {by}" if by else "")
            self._event("set_role", user.id, user.name, reason=reason)
        return self.user(name)

    def set_validity(self, name: str, valid_from: Timestamp, valid_until: Timestamp) -> User:
        """Limit when a user is let in (None: no limit on that side)."""
        vf, vu = _check_validity(valid_from, valid_until)
        with self._write():
            user = self._get_user(name)
            self.db.execute(
                "UPDATE users SET valid_from = ?, valid_until = ? WHERE id = ?", [vf, vu, user.id]
            )
            self._event("set_validity", user.id, user.name, reason=f"{_iso(vf)} .. {_iso(vu)}")
        return self.user(name)

    def stage_enrolment(self, name: str, role: str = "user") -> None:
        """Name the next person enrolled with the door's enrol button (replaces any staged name)."""
        name, _, _ = self._check_user_fields(name, role, None, None)
        with self._write():
            self._refuse_existing(name)
            self.db.execute(
                "INSERT OR REPLACE INTO staged_enrolment (id, name, role, staged) VALUES (1, ?, ?, ?)",
                [name, role, self._clock()],
            )
            self._event("stage", None, name, reason=f"role {role}")

    def staged_enrolment(self) -> tuple[str, str] | None:
        """The staged (name, role), left staged; None when nothing is staged."""
        with self._read():
            return self._staged_row()

    def take_staged_enrolment(self) -> tuple[str, str] | None:
        """The staged (name, role), removed from the gallery; None when nothing is staged."""
        with self._write():
            staged = self._staged_row()
            self.db.execute("DELETE FROM staged_enrolment")
        return staged

    def _staged_row(self) -> tuple[str, str] | None:
        row = self.db.execute("SELECT name, role FROM staged_enrolment WHERE id = 1").fetchone()
        return None if row is None else (row[0], row[1])

    # -- templates -------------------------------------------------------------------------

    def templates_matrix(self, model_id: str, now: float | None = None) -> Templates:
        """Templates of `model_id` owned by users who are active and valid at `now` (epoch s).

        `now` defaults to the gallery clock. Rows are in enrolment order.
        """
        now = self._clock() if now is None else now
        with self._read():
            rows = self.db.execute(
                """SELECT u.name, t.embedding FROM templates t JOIN users u ON u.id = t.user_id
                   WHERE t.model_id = ? AND u.active = 1
                     AND (u.valid_from IS NULL OR u.valid_from <= ?)
                     AND (u.valid_until IS NULL OR ? < u.valid_until)
                   ORDER BY t.id""",
                [model_id, now, now],
            ).fetchall()
        if not rows:
            return Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32))
        names = np.array([r[0] for r in rows], dtype=str)
        return Templates(names, self._decode_templates([(r[0], r[1]) for r in rows]))

    def user_templates(self, name: str, model_id: str) -> np.ndarray:
        """(N, D) float32 templates of one user made by `model_id` (any activity or validity)."""
        with self._read():
            user = self._get_user(name)
            rows = self.db.execute(
                "SELECT embedding FROM templates WHERE user_id = ? AND model_id = ? ORDER BY id",
                [user.id, model_id],
            ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32)
        return self._decode_templates([(name, r[0]) for r in rows])

    def _decode_templates(self, rows: list[tuple[str, bytes]]) -> np.ndarray:
        """(N, D) float32 from (user name, blob) rows; a blob of the wrong size or type is damage, named."""
        sizes = [len(blob) if isinstance(blob, bytes) else -1 for _, blob in rows]
        ranked = Counter(sizes).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            # No majority says which size is right: name everyone involved rather than guess.
            owners = ", ".join(f"{name!r} {size} bytes" for (name, _), size in zip(rows, sizes, strict=True))
            raise GalleryError(
                f"{self.path}: templates differ in size ({owners}), so some are damaged; remove the damaged "
                "user with `facegate users remove NAME` and enrol them again, or restore a backup."
            )
        expected = ranked[0][0]
        for (name, blob), size in zip(rows, sizes, strict=True):
            if size <= 0 or size % 4 or size != expected:
                got = f"{size} bytes" if size >= 0 else f"a {type(blob).__name__}, not bytes"
                raise GalleryError(
                    f"{self.path}: a template of user {name!r} is damaged ({got}; the others have "
                    f"{expected} bytes); remove the user with `facegate users remove {name}` and enrol "
                    "them again, or restore the gallery from a backup."
                )
        flat = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4")
        matrix = flat.reshape(len(rows), -1).astype(np.float32)
        if not np.isfinite(matrix).all():
            bad = rows[int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])][0]
            raise GalleryError(
                f"{self.path}: a template of user {bad!r} holds NaN or infinity (damaged); remove the user "
                f"with `facegate users remove {bad}` and enrol them again, or restore a backup."
            )
        return matrix

    def foreign_model_templates(self, model_id: str) -> dict[str, int]:
        """User name -> number of their templates made by a model other than `model_id`.

        Those templates never match; non-empty means "re-enrol these users with the new model".
        """
        with self._read():
            rows = self.db.execute(
                """SELECT u.name, COUNT(*) FROM templates t JOIN users u ON u.id = t.user_id
                   WHERE t.model_id != ? GROUP BY u.id ORDER BY u.name""",
                [model_id],
            ).fetchall()
        return {name: count for name, count in rows}

    # -- events ----------------------------------------------------------------------------

    def log_event(
        self,
        kind: str,
        *,
        name: str | None = None,
        score: float | None = None,
        reason: str = "",
        time: float | None = None,
    ) -> int:
        """Append an audit event and return its id.

        Args:
            kind: one of EVENT_KINDS, e.g. "grant", "deny".
            name: the user concerned, if any; their id is looked up and stored too.
            score: cosine similarity behind the decision, if any.
            reason: short text, e.g. the policy's Reason.
            time: epoch seconds; defaults to the gallery clock.
        """
        if kind not in EVENT_KINDS:
            raise GalleryError(f"unknown event kind {kind!r}; use one of {', '.join(EVENT_KINDS)}.")
        with self._write(counts=False):
            user = self._find_user(name) if name is not None else None
            # Store the enrolled spelling of the name, so events group by user however it was typed.
            return self._event(
                kind, user.id if user else None, user.name if user else name, score, reason, time
            )

    def events(self, limit: int | None = 100, since: float | None = None) -> list[Event]:
        """The newest `limit` events (None: all) at or after `since` (epoch s), newest first."""
        sql = "SELECT * FROM events WHERE time >= ? ORDER BY time DESC, id DESC"
        params: list[Any] = [float("-inf") if since is None else since]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read():
            return [Event(**row) for row in self.db.query(sql, params)]

    def event(self, event_id: int) -> Event | None:
        """One event by its id, or None."""
        with self._read():
            rows = list(self.db.query("SELECT * FROM events WHERE id = ?", [event_id]))
        return Event(**rows[0]) if rows else None

    def prune_events(self, before: float) -> int:
        """Delete events older than `before` (epoch s), e.g. to keep a privacy retention period.

        Returns the number deleted.
        """
        with self._write(counts=False):
            return self.db.execute("DELETE FROM events WHERE time < ?", [before]).rowcount

    def export_events_csv(
        self, out: TextIO, since: float | None = None, keep: Callable[[Event], bool] | None = None
    ) -> int:
        """Write events (oldest first; only those `keep` passes, if given) as CSV with ISO 8601 UTC
        times; returns rows written."""
        rows = [e for e in reversed(self.events(limit=None, since=since)) if keep is None or keep(e)]
        writer = csv.writer(out)
        writer.writerow(["id", "time", "kind", "user_id", "name", "score", "reason"])
        for e in rows:
            score = "" if e.score is None else f"{e.score:.4f}"
            writer.writerow([e.id, _iso(e.time), e.kind, e.user_id or "", e.name or "", score, e.reason])
        return len(rows)

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn sqlite3 errors into one-line GalleryErrors that say what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            raise GalleryError(_explain(self.path, exc)) from exc

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock, self._errors():
            yield

    @contextmanager
    def _write(self, counts: bool = True) -> Iterator[None]:
        """One transaction. IMMEDIATE takes the write lock up front, so a concurrent writer makes
        this wait (busy timeout) rather than fail half-way after its reads."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if counts:
                self._local_writes += 1

    def _check_user_fields(
        self, name: str, role: str, valid_from: Timestamp, valid_until: Timestamp
    ) -> tuple[str, float | None, float | None]:
        name = _check_name(name)
        if role not in ROLES:
            raise GalleryError(f"role {role!r} is not known; use one of {', '.join(ROLES)}.")
        return (name, *_check_validity(valid_from, valid_until))

    def _find_user(self, name: str) -> User | None:
        # Names are stored NFKC-normalised (_check_name), so look up the normalised spelling; then the
        # name as typed, for a user stored before names were normalised.
        for key in dict.fromkeys([_normal_name(name), name.strip()]):
            rows = list(self.db.query(_USER_SELECT + " WHERE u.name = ? GROUP BY u.id", [key]))
            if rows:
                return _user(rows[0])
        return None

    def _get_user(self, name: str) -> User:
        user = self._find_user(name)
        if user is None:
            raise GalleryError(f"no user called {name!r}; `facegate users list` shows who is enrolled.")
        return user

    def _store_new_user(
        self,
        name: str,
        role: str,
        valid_from: float | None,
        valid_until: float | None,
        blobs: list[bytes],
        dim: int,
        model_id: str,
        qualities: list[float | None],
        where: str,
    ) -> None:
        """Insert a checked new user and their templates, with the "enrol" event; inside _write()."""
        self._refuse_existing(name)
        self._check_dim(model_id, dim)
        user_id = self._insert_user(name, role, valid_from, valid_until)
        self._insert_templates(user_id, blobs, model_id, qualities)
        self._event("enrol", user_id, name, reason=f"{len(blobs)} templates{where}, model {model_id}")

    def _refuse_existing(self, name: str) -> None:
        existing = self._find_user(name)
        if existing is not None:
            raise GalleryError(
                f"a user called {existing.name!r} already exists; choose another name, "
                f"or add photos to that user with `facegate users add-photos {existing.name} PHOTO...`."
            )

    def _check_dim(self, model_id: str, dim: int) -> None:
        row = self.db.execute(
            "SELECT length(embedding) FROM templates WHERE model_id = ? LIMIT 1", [model_id]
        ).fetchone()
        if row is not None and row[0] // 4 != dim:
            raise GalleryError(
                f"model {model_id!r} embeddings in {self.path} have {row[0] // 4} dimensions, "
                f"these have {dim}; the model_id must change whenever the embedder's output changes."
            )

    def _insert_user(self, name: str, role: str, valid_from: float | None, valid_until: float | None) -> int:
        record = {
            "name": name,
            "role": role,
            "active": 1,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "created": self._clock(),
        }
        return int(self.db["users"].insert(record).last_pk)  # type: ignore[union-attr]

    def _insert_templates(
        self, user_id: int, blobs: list[bytes], model_id: str, qualities: list[float | None]
    ) -> None:
        created = self._clock()
        self.db["templates"].insert_all(  # type: ignore[union-attr]
            {"user_id": user_id, "embedding": b, "model_id": model_id, "quality": q, "created": created}
            for b, q in zip(blobs, qualities, strict=True)
        )

    def _event(
        self,
        kind: str,
        user_id: int | None,
        name: str | None,
        score: float | None = None,
        reason: str = "",
        when: float | None = None,
    ) -> int:
        record = {
            "time": self._clock() if when is None else float(when),
            "kind": kind,
            "user_id": user_id,
            "name": name,
            "score": None if score is None else float(score),
            "reason": reason,
        }
        return int(self.db["events"].insert(record).last_pk)  # type: ignore[union-attr]


_USER_SELECT = """SELECT u.id, u.name, u.role, u.active, u.valid_from, u.valid_until, u.created,
    COUNT(t.id) AS templates FROM users u LEFT JOIN templates t ON t.user_id = u.id"""


def _user(row: dict[str, Any]) -> User:
    return User(**{**row, "active": bool(row["active"])})


# Characters that draw nothing (or nothing on their own) although their Unicode category is a letter,
# symbol or mark: with them two names look the same in `users list` and the event log.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))  # variation selectors
    + list(range(0xE0100, 0xE01F0))  # variation selectors supplement
)
# Format (Cf, e.g. zero-width space, bidi overrides), control, surrogate, private-use and unassigned
# characters, and line or paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAME_RULE = "type the name with visible letters, digits and punctuation, and single spaces between words"


def _normal_name(name: str) -> str:
    """The spelling a name is stored and looked up under: NFKC (full-width, ligature and compatibility
    forms folded, so "ｌｉｎ" is "lin"), without leading and trailing whitespace."""
    return unicodedata.normalize("NFKC", name).strip()


def _bad_name_char(name: str, spaces: bool = True) -> str | None:
    """Why `name` (already stripped) cannot be a user name because of one of its characters, or None.

    spaces=False: let any space character by (the name as typed, before NFKC makes them plain spaces).
    """
    for ch in name:
        cat = unicodedata.category(ch)
        odd_space = spaces and cat.startswith("Z") and ch != " "
        if cat in _REFUSED_CATEGORIES or ord(ch) in _INVISIBLE or odd_space:
            what = unicodedata.name(ch, "a control character" if cat == "Cc" else "an unnamed character")
            return f"U+{ord(ch):04X} ({what}), which is invisible or a control character"
    if spaces and "  " in name:
        return "two spaces in a row"
    if unicodedata.category(name[0]).startswith("M"):
        return f"a combining mark (U+{ord(name[0]):04X}) with no letter before it"
    return None


def _check_name(name: str) -> str:
    """The stored spelling of a new user name (`_normal_name`); GalleryError if it could pass for
    another name: empty, too long, or with invisible, control or format characters."""
    if not isinstance(name, str) or not name.strip():
        raise GalleryError("a user name must not be empty.")
    # Look at the name as typed first, so the message names the character that was typed.
    problem = _bad_name_char(name.strip(), spaces=False)
    normal = _normal_name(name)
    if problem is None and not normal:
        raise GalleryError(f"user name {name!r} has no visible characters; {_NAME_RULE}.")
    problem = problem or _bad_name_char(normal)
    if problem is not None:
        raise GalleryError(
            f"user name {name.strip()[:80]!r} contains {problem}, so it could look the same as another "
            f"name; {_NAME_RULE}."
        )
    if len(normal) > MAX_NAME_LEN:
        raise GalleryError(f"user name {normal[:80]!r} must be at most {MAX_NAME_LEN} printable characters.")
    return normal


def _timestamp(value: Timestamp) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _check_validity(valid_from: Timestamp, valid_until: Timestamp) -> tuple[float | None, float | None]:
    vf, vu = _timestamp(valid_from), _timestamp(valid_until)
    if vf is not None and vu is not None and vu <= vf:
        raise GalleryError(f"valid_until ({_iso(vu)}) must be after valid_from ({_iso(vf)}).")
    return vf, vu


def _check_embeddings(
    embeddings: np.ndarray, model_id: str, qualities: Sequence[float] | None
) -> tuple[list[bytes], int, list[float | None]]:
    """Validate (N, D) unit-length embeddings; return them as little-endian float32 blobs."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise GalleryError("model_id must be a non-empty string naming the embedder model.")
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise GalleryError(f"embeddings must be an (N, D) array with N, D >= 1, got shape {arr.shape}.")
    # Stored as float32: exact for float32 input, which is what the embedder produces.
    arr = np.ascontiguousarray(arr, dtype="<f4")
    if not np.all(np.isfinite(arr)):
        raise GalleryError("embeddings contain NaN or infinity; the embedder output is broken.")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    if np.any(np.abs(norms - 1) > _NORM_TOLERANCE):
        raise GalleryError(
            f"embeddings must have unit length (L2 norm 1), got norms {np.round(norms, 3).tolist()[:5]}; "
            "normalise them first."
        )
    n = arr.shape[0]
    if qualities is None:
        quals: list[float | None] = [None] * n
    else:
        quals = [float(q) for q in qualities]
        if len(quals) != n:
            raise GalleryError(f"got {len(quals)} qualities for {n} embeddings; give one per embedding.")
    return [row.tobytes() for row in arr], arr.shape[1], quals


def _iso(t: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC, "" for None."""
    return "" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _explain(path: str, exc: sqlite3.Error) -> str:
    """A one-line, actionable message for an sqlite3 error on the gallery at `path`."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return (
            f"{path} is locked by another process (the facegate service or another command is writing); "
            "try again, or stop the other process first."
        )
    if "not a database" in low or "file is encrypted" in low:
        return (
            f"{path} is not a FaceGate gallery (not an SQLite database, or damaged at the start); "
            "restore it from a backup or set gallery.path to a new file. It was left untouched."
        )
    if "malformed" in low or "corrupt" in low:
        return (
            f"{path} is damaged ({text}); stop FaceGate and restore the file from a backup "
            f"(`sqlite3 {path} .recover` may save its data)."
        )
    if "unable to open" in low:
        return f"cannot open {path}: check that its folder exists and is writable by the facegate user."
    if "readonly" in low or "read-only" in low:
        return f"{path} is read-only: give the facegate user write access to the file and its folder."
    if "disk is full" in low or ("disk i/o" in low and _free_bytes(path) < LOW_DISK_BYTES):
        # SQLite reports a full disk as an I/O error when it cannot even create the -wal/-shm files.
        return f"{path}: the disk is full; free some space. Nothing was changed."
    if "disk i/o" in low:
        return (
            f"{path}: the storage failed to read or write ({text}); check the SD card or disk "
            "(`dmesg` shows its errors) and restore the gallery from a backup if it persists."
        )
    return f"{path}: database error: {text}."


def write_probe(path: str) -> str:
    """Whether a write to the gallery at `path` could go ahead now, for `facegate doctor`.

    Takes the write lock without waiting and releases it at once, writing nothing.

    Returns:
        "writable now", or a note that another writer holds the lock (the service retries).

    Raises:
        GalleryError: the disk is (almost) full, or the file cannot be written.
    """
    if path != ":memory:" and _free_bytes(path) < LOW_DISK_BYTES:
        raise GalleryError(f"{path}: the disk is (almost) full; events cannot be stored: free some space")
    conn = sqlite3.connect(path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
            raise GalleryError(f"{path}: events cannot be stored: {exc}") from exc
        return "locked by another writer right now (the service queues events and retries)"
    finally:
        conn.close()
    return "writable now"


LOW_DISK_BYTES = 1 << 20
"""Free space (bytes) under which an SQLite I/O error is reported as a full disk: a commit needs pages."""


def _free_bytes(path: str) -> int:
    """Bytes free to this user on the filesystem of `path`'s folder; a huge number if unknown."""
    try:
        return shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return 1 << 62
