"""Gallery on a real SQLite file: users, templates, events, transactions, and damaged/locked files."""

from __future__ import annotations

import io
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from appliance.errors import GalleryError
from appliance.gallery.store import Gallery

MODEL = "dlib-resnet-f16-test"
rng = np.random.default_rng(7)


def faces(n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "facegate.db"


@pytest.fixture
def gallery(path: Path) -> Iterator[Gallery]:
    with Gallery(path, clock=Clock()) as g:
        yield g


def test_enrolment_survives_reopening_the_file(path: Path) -> None:
    emb = faces(5)
    with Gallery(path) as g:
        g.enrol("Ann", emb, MODEL, qualities=[0.9] * 5)
    with Gallery(path) as g:
        user = g.user("ann")
        assert (user.name, user.role, user.active, user.templates) == ("Ann", "user", True, 5)
        names, matrix = g.templates_matrix(MODEL)
    assert names.tolist() == ["Ann"] * 5
    assert np.array_equal(matrix, emb)
    assert matrix.dtype == np.float32


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 64)), elements=st.floats(-1, 1, width=32))
)
@example(np.array([[5.6293846e-23]], dtype=np.float32))  # a subnormal row, found by CI
def test_embeddings_round_trip_bit_for_bit(raw: np.ndarray) -> None:
    # Normalise in float64: in float32 a subnormal row (e.g. 5.6e-23) underflows to a norm far from 1.
    wide = raw.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    emb = (wide / np.where(norms == 0, 1, norms)).astype(np.float32)
    emb[norms[:, 0] == 0, 0] = 1.0  # a zero row becomes a unit vector
    with tempfile.TemporaryDirectory() as tmp:
        with Gallery(Path(tmp) / "g.db") as g:
            g.enrol("x", emb, MODEL)
        with Gallery(Path(tmp) / "g.db") as g:
            _, matrix = g.templates_matrix(MODEL)
            one = g.user_templates("x", MODEL)
    assert matrix.tobytes() == emb.tobytes()
    assert one.tobytes() == emb.tobytes()


def test_file_uses_wal_and_full_sync(path: Path, gallery: Gallery) -> None:
    assert gallery.db.journal_mode == "wal"
    assert gallery.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_schema_migrations_are_recorded_once_by_name(path: Path) -> None:
    for _ in range(2):  # reopening must not run them again
        with Gallery(path) as g:
            assert g.schema_version == 3
            names = [r["name"] for r in g.db.query("SELECT name FROM _sqlite_migrations")]
            assert names == ["m001_initial_schema", "m002_staged_enrolment", "m003_site_replication"]
            assert g.db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_enrol_is_all_or_nothing(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(gallery, "_insert_templates", fail)
    with pytest.raises(GalleryError, match="disk I/O error"):
        gallery.enrol("Ann", faces(3), MODEL)
    assert gallery.users() == []
    assert gallery.events() == []
    monkeypatch.undo()
    assert gallery.enrol("Ann", faces(3), MODEL).templates == 3


def test_names_are_unique_whatever_the_case(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(2), MODEL)
    with pytest.raises(GalleryError, match="'Ann' already exists"):
        gallery.enrol("ANN ", faces(2), MODEL)
    assert gallery.user("ann").templates == 2


def test_bad_names_and_roles_are_refused(gallery: Gallery) -> None:
    for name in ["", "   ", "a" * 65, "bad\nname"]:
        with pytest.raises(GalleryError, match="name"):
            gallery.add_user(name)
    with pytest.raises(GalleryError, match="role 'root'"):
        gallery.add_user("bob", role="root")


def test_add_user_then_templates(gallery: Gallery) -> None:
    gallery.add_user("Bob", role="admin")
    assert gallery.templates_matrix(MODEL).matrix.shape == (0, 0)
    assert gallery.add_templates("bob", faces(2), MODEL) == 2
    assert gallery.user("Bob").role == "admin"
    assert gallery.templates_matrix(MODEL).names.tolist() == ["Bob", "Bob"]


def test_rename_keeps_templates_and_refuses_taken_names(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(2), MODEL)
    gallery.enrol("Bob", faces(1), MODEL)
    with pytest.raises(GalleryError, match="that name is taken"):
        gallery.rename("ann", "BOB")
    user = gallery.rename("ann", "Anne")
    assert (user.name, user.templates) == ("Anne", 2)
    assert "Ann" not in gallery
    assert sorted(gallery.templates_matrix(MODEL).names.tolist()) == ["Anne", "Anne", "Bob"]
    assert gallery.rename("anne", "ANNE").name == "ANNE"  # a change of case only is fine


def test_set_role_changes_admin_rights_in_one_transaction(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery.enrol("Ann", faces(2), MODEL)
    assert not gallery.has_active_admin()
    user = gallery.set_role("ann", "admin", by="web admin root")
    assert (user.name, user.role, user.templates) == ("Ann", "admin", 2)
    assert gallery.has_active_admin()  # what the door's enrol button asks
    event = gallery.events()[0]
    assert (event.kind, event.name, event.reason) == ("set_role", "Ann", "user -> admin by web admin root")
    with pytest.raises(GalleryError, match="role 'root'"):
        gallery.set_role("Ann", "root")
    with pytest.raises(GalleryError, match="no user called 'Bob'"):
        gallery.set_role("Bob", "admin")

    def fail(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(gallery, "_event", fail)  # the event cannot be stored: nor is the change
    with pytest.raises(GalleryError, match="disk I/O error"):
        gallery.set_role("Ann", "user")
    monkeypatch.undo()
    assert gallery.user("Ann").role == "admin"
    assert [e.kind for e in gallery.events()] == ["set_role", "enrol"]


def test_remove_deletes_templates_but_keeps_history(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(3), MODEL)
    gallery.log_event("grant", name="Ann", score=0.8, reason="matched")
    assert gallery.remove("ANN") == 3
    assert gallery.users() == []
    assert gallery.db.execute("SELECT COUNT(*) FROM templates").fetchone()[0] == 0
    assert [e.kind for e in gallery.events()] == ["remove", "grant", "enrol"]
    with pytest.raises(GalleryError, match="no user called 'Ann'"):
        gallery.remove("Ann")


def test_only_active_and_currently_valid_users_match(gallery: Gallery) -> None:
    now = 1_800_000_000.0
    gallery.enrol("Ann", faces(1), MODEL)
    gallery.enrol("Bob", faces(1), MODEL, valid_from=now + 100)
    gallery.enrol("Cat", faces(1), MODEL, valid_until=now)
    gallery.enrol("Dan", faces(1), MODEL, valid_until=datetime.fromtimestamp(now + 50, UTC))
    gallery.enrol("Eve", faces(1), MODEL)
    gallery.set_active("eve", False)
    assert gallery.templates_matrix(MODEL, now).names.tolist() == ["Ann", "Dan"]
    assert gallery.templates_matrix(MODEL, now + 100).names.tolist() == ["Ann", "Bob"]
    gallery.set_active("Eve", True)
    gallery.set_validity("Cat", None, None)
    assert gallery.templates_matrix(MODEL, now).names.tolist() == ["Ann", "Cat", "Dan", "Eve"]
    assert not gallery.user("Bob").is_valid_at(now)
    with pytest.raises(GalleryError, match="must be after"):
        gallery.set_validity("Bob", now, now - 1)


def test_other_models_templates_are_kept_apart_and_reported(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(2), "old-model")
    gallery.enrol("Bob", faces(1), MODEL)
    gallery.add_templates("Bob", faces(1), "old-model")
    assert gallery.templates_matrix(MODEL).names.tolist() == ["Bob"]
    assert gallery.foreign_model_templates(MODEL) == {"Ann": 2, "Bob": 1}
    assert gallery.foreign_model_templates("old-model") == {"Bob": 1}


def test_dimension_change_within_a_model_is_refused(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(1, 128), MODEL)
    with pytest.raises(GalleryError, match="have 128 dimensions, these have 64"):
        gallery.enrol("Bob", faces(1, 64), MODEL)
    assert "Bob" not in gallery


@pytest.mark.parametrize(
    ("embeddings", "qualities", "message"),
    [
        (np.ones((2, 4), np.float32), None, "unit length"),
        (np.full((1, 4), np.nan, np.float32), None, "NaN"),
        (np.ones(4, np.float32) / 2, None, r"\(N, D\)"),
        (np.zeros((0, 4), np.float32), None, r"\(N, D\)"),
        (np.eye(4, dtype=np.float32)[:2], [0.5], "2 embeddings"),
    ],
)
def test_bad_embeddings_are_refused_before_any_write(
    gallery: Gallery, embeddings: np.ndarray, qualities: list[float] | None, message: str
) -> None:
    with pytest.raises(GalleryError, match=message):
        gallery.enrol("Ann", embeddings, MODEL, qualities)
    assert gallery.users() == []


def test_events_newest_first_with_limit_and_since(gallery: Gallery) -> None:
    for i, kind in enumerate(["grant", "deny", "grant", "exit"]):
        gallery.log_event(kind, score=0.1 * i, reason=f"r{i}", time=1000.0 + i)
    assert [e.reason for e in gallery.events()] == ["r3", "r2", "r1", "r0"]
    assert [e.reason for e in gallery.events(limit=2)] == ["r3", "r2"]
    assert [e.reason for e in gallery.events(since=1002.0)] == ["r3", "r2"]


def test_prune_events_keeps_recent_ones(gallery: Gallery) -> None:
    for t in (10.0, 20.0, 30.0):
        gallery.log_event("deny", time=t)
    assert gallery.prune_events(before=20.0) == 1
    assert [e.time for e in gallery.events()] == [30.0, 20.0]


def test_events_name_the_enrolled_spelling_and_id(gallery: Gallery) -> None:
    user = gallery.enrol("Ann", faces(1), MODEL)
    gallery.log_event("grant", name="ann", score=0.7)
    gallery.log_event("deny", name="stranger?", reason="unknown face")
    deny, grant = gallery.events(limit=2)
    assert (grant.name, grant.user_id, grant.score) == ("Ann", user.id, pytest.approx(0.7))
    assert (deny.name, deny.user_id) == ("stranger?", None)


def test_unknown_event_kind_is_refused(gallery: Gallery) -> None:
    with pytest.raises(GalleryError, match="unknown event kind 'grnat'"):
        gallery.log_event("grnat")


def test_events_csv_export(gallery: Gallery) -> None:
    gallery.log_event("deny", score=0.31234, reason="unknown face", time=0.0)
    gallery.log_event("grant", name="Zoë, the 2nd", score=0.9, reason="matched", time=60.0)
    out = io.StringIO()
    assert gallery.export_events_csv(out) == 2
    lines = out.getvalue().splitlines()
    assert lines == [
        "id,time,kind,user_id,name,score,reason",
        "1,1970-01-01T00:00:00+00:00,deny,,,0.3123,unknown face",
        '2,1970-01-01T00:01:00+00:00,grant,,"Zoë, the 2nd",0.9000,matched',
    ]


def test_two_processes_see_each_others_changes(path: Path) -> None:
    with Gallery(path) as service, Gallery(path) as cli:
        before = service.revision()
        assert service.revision() == before
        cli.enrol("Ann", faces(2), MODEL)
        assert service.revision() != before
        assert service.templates_matrix(MODEL).names.tolist() == ["Ann", "Ann"]


def test_locked_database_gives_a_clear_error_and_loses_nothing(path: Path) -> None:
    with Gallery(path) as g:
        g.enrol("Ann", faces(1), MODEL)
    other = sqlite3.connect(path)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with Gallery(path, busy_timeout_s=0.1) as g, pytest.raises(GalleryError, match="locked by another"):
            g.enrol("Bob", faces(1), MODEL)
    finally:
        other.rollback()
        other.close()
    with Gallery(path) as g:
        assert [u.name for u in g.users()] == ["Ann"]
        g.enrol("Bob", faces(1), MODEL)


def test_not_a_database_is_refused_and_left_untouched(path: Path) -> None:
    content = b"these are my holiday photos, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises(GalleryError, match="is not a FaceGate gallery.*left untouched"):
        Gallery(path)
    assert path.read_bytes() == content


def test_someone_elses_sqlite_database_is_refused(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(GalleryError, match="not a FaceGate gallery .*photos.*left untouched"):
        Gallery(path)
    # Untouched means untouched: not even switched to WAL (which rewrites the header and adds -wal/-shm).
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("photos",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_gallery_from_a_newer_facegate_is_refused(path: Path) -> None:
    with Gallery(path) as g:
        g.enrol("Ann", faces(1), MODEL)
        g.db["_sqlite_migrations"].insert(
            {"migration_set": "facegate", "name": "m002_from_the_future", "applied_at": "2030"}
        )
    with pytest.raises(GalleryError, match="newer FaceGate.*m002_from_the_future"):
        Gallery(path)


def test_damaged_file_gives_a_clear_error(path: Path) -> None:
    with Gallery(path) as g:
        g.enrol("Ann", faces(300), MODEL)
        assert g.integrity_problems() == []
    data = bytearray(path.read_bytes())
    for page in range(4096, len(data), 4096):  # scribble over every page header but the first
        data[page : page + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    # The damage may show on opening or on the first read; either way it must be a GalleryError.
    with pytest.raises(GalleryError, match="is damaged .*restore the file from a backup"), Gallery(path) as g:
        g.templates_matrix(MODEL)


def test_backup_is_a_working_copy(path: Path, tmp_path: Path) -> None:
    emb = faces(2)
    with Gallery(path) as g:
        g.enrol("Ann", emb, MODEL)
        g.backup(tmp_path / "copy.db")
        with pytest.raises(GalleryError, match="already exists"):
            g.backup(tmp_path / "copy.db")
    with Gallery(tmp_path / "copy.db") as copy:
        assert copy.templates_matrix(MODEL).matrix.tobytes() == emb.tobytes()


def test_missing_folder_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="cannot open .*folder exists"):
        Gallery(tmp_path / "no" / "such" / "dir" / "g.db")


def test_memory_gallery_works(tmp_path: Path) -> None:
    with Gallery(":memory:") as g:
        g.enrol("Ann", faces(1), MODEL)
        assert g.user("Ann").templates == 1


def test_close_is_idempotent(path: Path) -> None:
    g = Gallery(path)
    g.close()
    g.close()


def test_a_staged_name_is_taken_once(path: Path) -> None:
    with Gallery(path) as g:
        assert g.take_staged_enrolment() is None
        g.stage_enrolment("Carol", role="admin")
        g.stage_enrolment("Dave")  # the latest staged name wins
    with Gallery(path) as g:  # staged names survive a restart of the service
        assert g.take_staged_enrolment() == ("Dave", "user")
        assert g.take_staged_enrolment() is None


def test_staging_an_existing_name_is_refused(gallery: Gallery) -> None:
    gallery.enrol("Ann", faces(1), MODEL)
    with pytest.raises(GalleryError, match="already exists"):
        gallery.stage_enrolment("ann")


def test_a_reader_never_creates_a_gallery_at_a_mistyped_path(tmp_path: Path) -> None:
    missing = tmp_path / "galery.db"
    with pytest.raises(GalleryError, match="there is no gallery at .*galery.db"):
        Gallery(missing, create=False)
    assert not missing.exists()
    with Gallery(missing) as created:  # a writer (enrol) still creates it
        assert created.users() == []
    with Gallery(missing, create=False) as existing:
        assert existing.users() == []
