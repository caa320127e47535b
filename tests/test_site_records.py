"""Site change records on real gallery files: sealed and opened with AES-GCM, applied idempotently in
version order, conflicts resolved the same way at every door, and tampered or foreign records refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ConfigError, GalleryError
from appliance.gallery.replica import Replica, UserState, Version, site_removal
from appliance.gallery.store import Gallery
from appliance.sites.records import RecordError, SiteKey, make_key_file, read_key_file

MODEL = "dlib_resnet_v1/mtcnn5-v1/flip"
SECRET = bytes(range(32))
rng = np.random.default_rng(15)


def faces(n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Clock:
    """A wall clock the test moves: epoch seconds."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Door:
    """One door's gallery file and replica, with its own clock."""

    def __init__(
        self, folder: Path, door: str, key: SiteKey | None = None, clock: Clock | None = None
    ) -> None:
        self.clock = clock or Clock()
        self.key = key or SiteKey(SECRET, "hq")
        self.gallery = Gallery(folder / f"{door}.db", clock=self.clock)
        self.replica = Replica(self.gallery, door, self.key.user_key, self.key.seal, MODEL)
        self.replica.join("hq")

    def publish(self) -> list[bytes]:
        """Stamp local changes; the payloads this door would put on the broker (marked published)."""
        self.replica.stamp_local()
        out = self.replica.outbox()
        for o in out:
            self.replica.mark_published(o.key, o.version)
        return [o.payload for o in out]

    def receive(self, payload: bytes) -> str:
        record = self.key.open(payload)
        return self.replica.apply(record.key, record.version, record.state, payload, record.base)

    def users(self) -> dict[str, tuple[bool, int]]:
        return {u.name: (u.active, u.templates) for u in self.gallery.users()}

    def template_rows(self) -> int:
        return self.gallery.db.execute("SELECT COUNT(*) FROM templates").fetchone()[0]


@pytest.fixture
def doors(tmp_path: Path):
    clock = Clock()
    a, b = Door(tmp_path, "a", clock=clock), Door(tmp_path, "b", clock=clock)
    yield a, b, clock
    a.gallery.close()
    b.gallery.close()


# -- the sealed format -------------------------------------------------------------------------


def test_a_record_opens_to_the_state_it_sealed_and_shows_no_name_or_face():
    key = SiteKey(SECRET, "hq")
    emb = faces(2)
    state = UserState("Ann Example", "admin", False, 1.0, 2.0, ())
    from appliance.gallery.replica import TemplateState

    state = UserState(
        "Ann Example", "admin", False, 1.0, 2.0, tuple(TemplateState(MODEL, e.tobytes(), 0.5) for e in emb)
    )
    payload = key.seal(state, Version(7, "a"))
    record = key.open(payload, topic_key=key.user_key("ann example"))
    assert record.state == state and record.version == Version(7, "a")
    assert b"Ann" not in payload and b"admin" not in payload and emb[0].tobytes()[:16] not in payload
    assert key.user_key("ANN EXAMPLE") == key.user_key("Ann Example")  # NOCASE, like the gallery
    assert key.user_key("Ann Example") != SiteKey(os.urandom(32), "hq").user_key("Ann Example")


def test_tampered_foreign_and_moved_records_are_refused():
    key = SiteKey(SECRET, "hq")
    payload = key.seal(UserState("ann"), Version(7, "a"))
    envelope = json.loads(payload)

    def altered(**fields: object) -> bytes:
        return json.dumps({**envelope, **fields}).encode()

    data = bytearray(__import__("base64").b64decode(envelope["data"]))
    data[3] ^= 1
    cases = {
        "a flipped ciphertext bit": altered(data=__import__("base64").b64encode(bytes(data)).decode()),
        "a raised version": altered(version=10**15),
        "another door's name": altered(door="z"),
        "a removal made of an enrolment": altered(deleted=True),
    }
    for what, bad in cases.items():
        with pytest.raises(RecordError, match="failed authentication"):
            key.open(bad)
        assert what
    foreign = SiteKey(os.urandom(32), "hq")
    with pytest.raises(RecordError, match="another site key"):
        key.open(foreign.seal(UserState("ann"), Version(8, "a")))
    # A foreign key that claims our key id still cannot make a record that opens.
    forged = json.loads(foreign.seal(UserState("ann"), Version(8, "a")))
    forged["kid"] = key.kid
    forged["user"] = key.user_key("ann")
    with pytest.raises(RecordError, match="failed authentication"):
        key.open(json.dumps(forged).encode())
    with pytest.raises(RecordError, match="another user than its topic"):
        key.open(payload, topic_key=key.user_key("bob"))
    with pytest.raises(RecordError, match="site 'hq'"):
        SiteKey(SECRET, "branch").open(payload)
    with pytest.raises(RecordError, match="not a FaceGate change record"):
        key.open(b"UNLOCK")


def test_key_file_is_made_private_and_refused_when_others_may_read_it(tmp_path: Path):
    path = tmp_path / "site.key"
    make_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(read_key_file(path)) == 32
    with pytest.raises(ConfigError, match="never overwritten"):
        make_key_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key_file(path)
    bad = tmp_path / "bad.key"
    bad.write_text("not hex\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="64 hex digits"):
        read_key_file(bad)


# -- applying records --------------------------------------------------------------------------


def test_an_enrolment_reaches_the_other_door_with_its_templates_and_a_duplicate_changes_nothing(doors):
    a, b, clock = doors
    emb = faces(3)
    a.gallery.enrol("Ann", emb, MODEL, [1.0, 2.0, 3.0])
    (payload,) = a.publish()
    assert b.receive(payload) == "applied"
    assert b.users() == {"Ann": (True, 3)}
    np.testing.assert_array_equal(b.gallery.user_templates("Ann", MODEL), emb)
    assert b.publish() == []  # applying a remote record is not a local change to send back
    events = len(b.gallery.events(limit=None))
    revision = b.gallery.db.execute("SELECT COUNT(*), MAX(id) FROM templates").fetchone()
    for _ in range(3):
        assert b.receive(payload) == "duplicate"
    assert b.users() == {"Ann": (True, 3)}
    assert b.gallery.db.execute("SELECT COUNT(*), MAX(id) FROM templates").fetchone() == revision
    assert len(b.gallery.events(limit=None)) == events


def test_a_late_record_changes_nothing(doors):
    a, b, clock = doors
    a.gallery.enrol("Ann", faces(2), MODEL)
    (first,) = a.publish()
    clock.t += 1
    a.gallery.set_active("Ann", False)
    (second,) = a.publish()
    assert b.receive(second) == "applied"
    assert b.receive(first) == "stale"  # delivered late: the newer state stays
    assert b.users() == {"Ann": (False, 2)}
    # One edit after another, each author having seen the last: no conflict anywhere.
    clock.t += 1
    b.gallery.set_active("Ann", True)
    assert a.receive(b.publish()[0]) == "applied"
    for door in (a, b):
        assert not [e for e in door.gallery.events(limit=None) if "conflict" in e.reason]


def test_every_order_of_concurrent_edits_ends_with_the_same_state_and_a_logged_conflict(tmp_path: Path):
    finals = set()
    for order in ("ab", "ba"):
        clock = Clock()
        (tmp_path / order).mkdir()
        a, b = Door(tmp_path / order, "a", clock=clock), Door(tmp_path / order, "b", clock=clock)
        a.gallery.enrol("Ann", faces(2), MODEL)
        b.receive(a.publish()[0])
        clock.t += 1  # both doors edit Ann in the same millisecond, neither having seen the other's
        a.gallery.set_active("Ann", False)
        b.gallery.set_validity("Ann", None, 1_900_000_000.0)
        for door in (a, b):
            door.gallery.db.execute("UPDATE site_dirty SET changed = ?", [clock.t])
        from_a, from_b = a.publish()[0], b.publish()[0]
        if order == "ab":
            a.receive(from_b), b.receive(from_a)
        else:
            b.receive(from_a), a.receive(from_b)
        finals |= {(order, repr(sorted(d.gallery.users(), key=lambda u: u.name))) for d in (a, b)}
        # Equal clocks: the larger door id, b, wins at both doors.
        assert a.gallery.user("Ann").active and a.gallery.user("Ann").valid_until == 1_900_000_000.0
        assert b.gallery.user("Ann").active
        conflicts = [
            e.reason for e in a.gallery.events(limit=None) if e.kind == "site" and "conflict" in e.reason
        ]
        assert conflicts and "kept door b's version" in conflicts[0]
        a.gallery.close(), b.gallery.close()
    states = {state for _, state in finals}
    assert len(states) == 1, finals


def test_a_removal_deletes_the_templates_everywhere_and_an_old_enrolment_does_not_bring_them_back(doors):
    a, b, clock = doors
    a.gallery.enrol("Ann", faces(2), MODEL)
    a.gallery.enrol("Bob", faces(2), MODEL)
    enrolments = a.publish()
    for p in enrolments:
        b.receive(p)
    clock.t += 1
    b.gallery.remove("ann")
    (tombstone,) = b.publish()
    assert a.receive(tombstone) == "applied"
    assert a.users() == {"Bob": (True, 2)} and a.template_rows() == 2
    for p in enrolments:
        assert a.receive(p) in ("stale", "duplicate")
    assert a.users() == {"Bob": (True, 2)}
    removal = site_removal(a.gallery, "ANN")
    assert removal is not None and removal.version.door == "b"
    # A door that was never told: the tombstone alone is enough (it removes, or records the removal).
    c = Door(a.gallery.path and Path(a.gallery.path).parent, "c", clock=clock)
    assert c.receive(tombstone) == "applied" and c.users() == {}
    assert c.receive(enrolments[0]) == "stale" and c.users() == {}
    c.gallery.close()


def test_a_rename_removes_the_old_name_and_publishes_the_new_one(doors):
    a, b, clock = doors
    a.gallery.enrol("Ann", faces(2), MODEL)
    b.receive(a.publish()[0])
    clock.t += 1
    a.gallery.rename("Ann", "Anne")
    out = a.publish()
    assert len(out) == 2
    for p in out:
        assert b.receive(p) == "applied"
    assert b.users() == {"Anne": (True, 2)}


def test_a_record_of_another_model_is_refused_with_the_gallery_unchanged(doors, tmp_path):
    a, b, clock = doors
    other = Door(tmp_path, "x", clock=clock)
    other.replica.model_id = "another-model"
    other.gallery.enrol("Eve", faces(2), "another-model")
    (payload,) = other.publish()
    outcome = a.receive(payload)
    assert outcome.startswith("refused") and "templates of another model" in outcome
    assert a.users() == {}
    assert any("another model" in e.reason for e in a.gallery.events() if e.kind == "site")
    other.gallery.close()


def test_a_local_change_not_yet_published_competes_by_its_version(doors):
    """A change made here a moment before a remote record arrives is stamped first, not lost unseen."""
    a, b, clock = doors
    a.gallery.enrol("Ann", faces(2), MODEL)
    b.receive(a.publish()[0])
    clock.t += 1
    a.gallery.set_active("Ann", False)
    (remote,) = a.publish()
    clock.t += 1
    b.gallery.set_validity("Ann", None, 1_900_000_000.0)  # later, not yet stamped when a's arrives
    assert b.receive(remote) == "stale"  # b's own change was stamped first and is newer
    (mine,) = b.publish()
    assert a.receive(mine) == "applied"
    assert a.gallery.user("Ann").valid_until == b.gallery.user("Ann").valid_until == 1_900_000_000.0


def test_users_enrolled_before_joining_are_published_once_and_a_lone_door_records_nothing(tmp_path):
    with Gallery(tmp_path / "lone.db") as g:
        g.enrol("Ann", faces(1), MODEL)
        g.remove("Ann")
        g.enrol("Bob", faces(1), MODEL)
        # A gallery that never joined a site keeps no trace of changes (nor of removed names).
        assert g.db.execute("SELECT COUNT(*) FROM site_dirty").fetchone()[0] == 0
    door = Door(tmp_path, "lone")  # joins the site "hq"
    assert door.publish() and door.replica.join("hq") == 0  # Bob, once
    assert door.publish() == []
    with pytest.raises(GalleryError, match="belongs to site 'hq'"):
        door.replica.join("branch")
    door.gallery.close()


def test_every_kind_of_change_is_published_whoever_makes_it(doors):
    """The triggers see the CLI's changes and the door's enrol button alike."""
    a, b, clock = doors
    steps = [
        lambda g: g.add_user("Zed"),
        lambda g: g.add_templates("Zed", faces(1), MODEL),
        lambda g: g.rename("Zed", "Zoe"),
        lambda g: g.set_active("Zoe", False),
        lambda g: g.set_validity("Zoe", 1_700_000_000.0, None),
        lambda g: (g.stage_enrolment("Door Person"), g.enrol_at_door("visitor", faces(2), MODEL)),
        lambda g: g.remove("Zoe"),
    ]
    for step in steps:
        clock.t += 1
        step(a.gallery)
        out = a.publish()
        assert out, step
        for payload in out:
            assert b.receive(payload) == "applied"
        assert b.users() == a.users()
    assert b.users() == {"Door Person": (True, 2)}
