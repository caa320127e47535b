"""The gallery's SQLite schema: the tables, the known roles and event kinds, and the migrations.

A migration runs once per gallery file, in a transaction, and is recorded by its name (sqlite-utils'
Migrations), so a file made by an older FaceGate is brought up to date when it is opened.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

ROLES = ("user", "admin")
"""A user's role; admins may be required to approve enrolments (enrolment.require_admin)."""

EVENT_KINDS = (
    "grant",  # the door was unlocked for a recognised user
    "deny",  # an unknown face persisted at the door
    "exit",  # the request-to-exit button was pressed
    "door",  # the door sensor changed (reason: "opened", "closed", "held open", "forced")
    "service",  # the service started or stopped (reason says which)
    "error",  # a fault the service recovered from (camera lost, ...)
    "remote",  # a lock command from the MQTT bridge: unlocked, refused or locked (reason: which, from where)
    "lock_now",  # an admin asked for the door to be locked now, on the web page (reason says who)
    "unlock_now",  # an admin asked for the door to be unlocked now, on the web page (reason says who)
    # Written by the gallery itself, in the same transaction as the change:
    "add_user",
    "enrol",
    "add_templates",
    "rename",
    "remove",
    "activate",
    "deactivate",
    "set_validity",
    "stage",
    "set_role",
    "site",  # a change record of another door applied, refused, or a conflict resolved (reason: which)
)
"""Known event kinds; log_event refuses others, so a typo cannot hide events from a query."""


def m001_initial_schema(db: Database) -> None:
    """Users, templates, events."""
    # COLLATE NOCASE: "Ann" and "ann" at the same door are the same person, never two users.
    db.execute(
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            valid_from REAL,
            valid_until REAL,
            created REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE templates (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            embedding BLOB NOT NULL,
            model_id TEXT NOT NULL,
            quality REAL,
            created REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX templates_user ON templates(user_id)")
    db.execute("CREATE INDEX templates_model ON templates(model_id)")
    # user_id is kept without a foreign key: the audit trail must outlive a removed user.
    db.execute(
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            user_id INTEGER,
            name TEXT,
            score REAL,
            reason TEXT NOT NULL DEFAULT ''
        )"""
    )
    db.execute("CREATE INDEX events_time ON events(time)")


def m002_staged_enrolment(db: Database) -> None:
    """The name (and role) for the next enrolment at the door, staged from the command line."""
    db.execute(
        """CREATE TABLE staged_enrolment (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            staged REAL NOT NULL
        )"""
    )


def m003_site_replication(db: Database) -> None:
    """Several doors, one set of users (gallery/replica.py): the change records this door holds, the
    users changed here since they were last published (filled by triggers, whoever made the change),
    and which doors have applied a removal."""
    db.execute(
        """CREATE TABLE site_records (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            clock INTEGER NOT NULL,
            door TEXT NOT NULL,
            base_clock INTEGER,
            base_door TEXT,
            deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
            payload BLOB NOT NULL,
            published INTEGER NOT NULL CHECK (published IN (0, 1)),
            acked INTEGER NOT NULL CHECK (acked IN (0, 1)),
            applied REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX site_records_name ON site_records(name COLLATE NOCASE)")
    # changed: when the last change was made (epoch s), which orders edits made at different doors.
    db.execute("CREATE TABLE site_dirty (name TEXT PRIMARY KEY COLLATE NOCASE, changed REAL)")
    db.execute(
        """CREATE TABLE site_acks (
            key TEXT NOT NULL, door TEXT NOT NULL, clock INTEGER NOT NULL, PRIMARY KEY (key, door)
        )"""
    )
    db.execute("CREATE TABLE site_doors (door TEXT PRIMARY KEY, state TEXT NOT NULL, seen REAL NOT NULL)")
    # The site this gallery has joined, if any: a single-door gallery records nothing of the above.
    db.execute(
        """CREATE TABLE site_membership (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            site TEXT NOT NULL,
            door TEXT NOT NULL,
            joined REAL NOT NULL
        )"""
    )
    # Triggers, so that every change is seen, whichever process or command made it, with its time (a
    # template deleted with its user finds no user: nothing is inserted).
    now = "(julianday('now') - 2440587.5) * 86400.0"
    dirty = "INSERT OR REPLACE INTO site_dirty (name, changed)"
    joined = "WHEN EXISTS (SELECT 1 FROM site_membership)"
    db.execute(
        f"CREATE TRIGGER site_user_added AFTER INSERT ON users {joined} "
        f"BEGIN {dirty} VALUES (NEW.name, {now}); END"
    )
    db.execute(
        f"""CREATE TRIGGER site_user_changed AFTER UPDATE ON users {joined}
            BEGIN {dirty} VALUES (OLD.name, {now}); {dirty} VALUES (NEW.name, {now}); END"""
    )
    db.execute(
        f"CREATE TRIGGER site_user_removed AFTER DELETE ON users {joined} "
        f"BEGIN {dirty} VALUES (OLD.name, {now}); END"
    )
    for what, row, op in (("added", "NEW", "INSERT"), ("removed", "OLD", "DELETE")):
        db.execute(
            f"""CREATE TRIGGER site_template_{what} AFTER {op} ON templates {joined}
                BEGIN {dirty} SELECT name, {now} FROM users WHERE id = {row}.user_id; END"""
        )


# To change the schema, append a function m00N_what_it_does(db) here; never edit a shipped one.
MIGRATION_STEPS = (m001_initial_schema, m002_staged_enrolment, m003_site_replication)
"""Schema changes in order; each runs once per file, in a transaction, recorded by its name."""

MIGRATIONS = Migrations("facegate")
for _step in MIGRATION_STEPS:
    MIGRATIONS(name=_step.__name__)(_step)

SCHEMA_VERSION = len(MIGRATION_STEPS)
"""Number of migrations this FaceGate knows; a gallery with more applied is refused."""
