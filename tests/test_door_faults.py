"""`facegate run` (run_door) when the gallery or the people around it misbehave: the door loop goes on.

Real SQLite files, the real models, walk-up clips, and gpiozero's MockFactory pins (--headless): the
enrol button is held on its mock pin. Frames are replayed as fast as the models go (not real time).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.access.enrol_button import NO_ADMIN_HINT
from appliance.access.enrolment import embed_photos
from appliance.app import door_process
from appliance.app.door_process import run_door
from appliance.app.event_writer import EventWriter
from appliance.app.wiring import quality_limits
from appliance.domain import Frame
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
from appliance.gallery.store import Gallery
from appliance.vision.images import read_image


@pytest.fixture(scope="module")
def walkup(tmp_path_factory, detector, photos) -> Path:
    """Obama walking up to the door: 45 frames."""
    image = read_image(photos["obama2.jpg"])
    portrait = head_and_shoulders(image, detector.detect(image)[0].box)
    return write_video(walkup_frames(portrait, n_frames=45), tmp_path_factory.mktemp("faults") / "obama.mp4")


@pytest.fixture(scope="module")
def obama_template(cfg, detector, embedder, photos) -> np.ndarray:
    embeddings, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    return embeddings


def door_cfg(cfg, *, require_admin: bool | None = None):
    """The shipped config with a short busy timeout, a short button hold and quick 3-shot enrolments,
    and [liveness] mode = "off": the walk-up clips are a photo moved in front of the camera."""
    enrolment = dataclasses.replace(cfg.enrolment, shots=3, min_shots_interval_s=0.1)
    if require_admin is not None:
        enrolment = dataclasses.replace(enrolment, require_admin=require_admin)
    return dataclasses.replace(
        cfg,
        gallery=dataclasses.replace(cfg.gallery, busy_timeout_s=0.5),
        gpio=dataclasses.replace(cfg.gpio, enrol_hold_s=0.05),
        enrolment=enrolment,
        liveness=dataclasses.replace(cfg.liveness, mode="off"),
    )


class Door:
    """run_door with a hook before each frame and the enrol button's mock pin in reach."""

    def __init__(self, monkeypatch, on_frame: Callable[[Frame], None] = lambda frame: None):
        self.hardware = None
        self.held = threading.Event()
        real_hardware, real_source = door_process.build_hardware, door_process.open_source

        def build_hardware(cfg, headless, on_enrol=None, on_exit=None):
            def enrol() -> None:
                on_enrol()
                self.held.set()

            self.hardware = real_hardware(cfg, headless, on_enrol=enrol, on_exit=on_exit)
            return self.hardware

        def open_source(*args, **kwargs):
            return HookedSource(real_source(*args, **kwargs), on_frame)

        monkeypatch.setattr(door_process, "build_hardware", build_hardware)
        monkeypatch.setattr(door_process, "open_source", open_source)

    def hold_enrol_button(self) -> None:
        """Hold the enrol button (its mock pin) until gpiozero reports it held, then let go."""
        self.held.clear()
        pin = self.hardware.buttons._enrol.pin
        pin.drive_low()
        assert self.held.wait(30), "the enrol button was never reported held"
        pin.drive_high()


class HookedSource:
    def __init__(self, source, on_frame: Callable[[Frame], None]):
        self.source, self.on_frame = source, on_frame

    def frames(self):
        for frame in self.source.frames():
            self.on_frame(frame)
            yield frame

    def close(self) -> None:
        self.source.close()

    def interrupt(self) -> None:
        self.source.interrupt()


def frames_judged(caplog) -> int:
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped (end of input)")]
    return int(line.split("after ")[1].split()[0])


def test_a_grant_while_another_writer_holds_the_lock_is_stored_later_with_its_time(
    cfg, embedder, obama_template, walkup, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.enrol("obama", obama_template, embedder.model_id)
    blocker = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    grants: list[tuple[int, float]] = []
    released_at: list[float] = []

    def release() -> None:
        blocker.execute("ROLLBACK")  # the other writer is done, longer than the busy timeout later
        released_at.append(time.time())

    def emit(record) -> None:
        if record.decision == "grant" and not grants:
            blocker.execute("BEGIN IMMEDIATE")  # another writer (the CLI) holds the lock at the grant
            grants.append((record.frame, time.time()))
            threading.Timer(1.5, release).start()

    Door(monkeypatch)
    try:
        code = run_door(door_cfg(cfg), source_spec=str(walkup), headless=True, db=db, emit=emit)
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
    assert code == 0
    assert grants and released_at, "the walk-up was not granted early enough to test the lock"
    assert frames_judged(caplog) == 45  # every frame was judged, the lock notwithstanding
    with Gallery(db) as gallery:
        events = list(reversed(gallery.events()))
    stored = [e for e in events if e.kind == "grant"]
    assert [e.name for e in stored] == ["obama"]  # written once the lock was released
    # It keeps the time of the grant, not of the write that finally succeeded.
    assert grants[0][1] - 1.0 <= stored[0].time < released_at[0]
    assert [e.kind for e in events if e.kind != "enrol"] == ["service", "grant", "service"]
    assert any("could not store event" in r.getMessage() for r in caplog.records)  # journaled


def test_a_staged_name_taken_meanwhile_is_an_error_event_not_the_end_of_the_loop(
    cfg, embedder, enrolment_clip, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.stage_enrolment("bush")  # `facegate enroll bush --at-door`
        unit = np.ones((1, 128), np.float32) / np.sqrt(128)
        gallery.enrol("bush", unit, "some-other-model")  # then `facegate enroll bush photos...`
    door = Door(monkeypatch, lambda frame: frame.index == 0 and door.hold_enrol_button())
    code = run_door(
        door_cfg(cfg, require_admin=False),
        source_spec=str(enrolment_clip),
        headless=True,
        db=db,
    )
    assert code == 0
    assert frames_judged(caplog) == 90
    assert any("enrolment of bush at the door failed" in r.getMessage() for r in caplog.records)
    with Gallery(db) as gallery:
        errors = [e for e in gallery.events() if e.kind == "error"]
        assert [e.name for e in errors] == ["bush"]
        assert "enrolment at the door failed" in errors[0].reason
        assert gallery.user("bush").templates == 1  # the other enrolment was left as it was
        assert gallery.staged_enrolment() == ("bush", "user")  # still staged, not silently used up


def test_with_no_admin_enrolled_the_button_only_logs_how_to_enrol_one(
    cfg, embedder, obama_template, walkup, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.enrol("obama", obama_template, embedder.model_id)  # a user, not an admin
    assert cfg.enrolment.require_admin  # the shipped config is secure by default
    door = Door(monkeypatch, lambda frame: frame.index == 1 and door.hold_enrol_button())
    code = run_door(door_cfg(cfg), source_spec=str(walkup), headless=True, db=db)
    assert code == 0
    messages = [r.getMessage() for r in caplog.records]
    assert NO_ADMIN_HINT in messages
    assert "facegate enroll NAME --role admin" in NO_ADMIN_HINT
    assert not [m for m in messages if m.startswith("enrolment of")]  # nothing started
    assert frames_judged(caplog) == 45
    with Gallery(db) as gallery:
        assert [u.name for u in gallery.users()] == ["obama"]


def test_with_require_admin_the_button_works_only_after_an_admin_was_granted(
    cfg, embedder, obama_template, walkup, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.enrol("root", obama_template, embedder.model_id, role="admin")
    granted: list[int] = []
    pressed: list[int] = []

    def emit(record) -> None:
        if record.decision == "grant" and record.user == "root":
            granted.append(record.frame)

    def on_frame(frame: Frame) -> None:
        if frame.index == 1 or (granted and not pressed and frame.index > granted[0]):
            door.hold_enrol_button()
            pressed.extend([frame.index] if granted else [])

    door = Door(monkeypatch, on_frame)
    code = run_door(
        door_cfg(cfg, require_admin=True),
        source_spec=str(walkup),
        headless=True,
        db=db,
        emit=emit,
    )
    assert code == 0
    assert pressed, "root was never granted"
    messages = [r.getMessage() for r in caplog.records]
    refused = [m for m in messages if m.startswith("enrol button ignored: an admin must be recognised")]
    started = [
        m
        for m in messages
        if m.startswith("enrolment of user-") and m.endswith("started: look at the camera")
    ]
    assert len(refused) == 1  # the press before the admin's grant
    assert len(started) == 1  # the press after it
    assert messages.index(refused[0]) < messages.index(started[0])


def test_the_event_writer_flushes_what_it_can_and_journals_the_rest(tmp_path, caplog):
    db = tmp_path / "g.db"
    Gallery(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    writer = EventWriter(Gallery(db, busy_timeout_s=0.05), maxsize=2, retry_initial_s=0.05)
    try:
        for reason in ("a", "b", "c"):  # the queue keeps 2: "a" is dropped and journaled
            writer.log_event("door", reason=reason)
        assert not writer.flush(0.3)  # still locked
        assert writer.dropped == 1 and writer.pending == 2
        blocker.execute("ROLLBACK")
        assert writer.flush(30)
    finally:
        writer.close()
        writer.gallery.close()
        blocker.close()
    assert any(
        "event not stored" in r.getMessage() and "reason='a'" in r.getMessage() for r in caplog.records
    )
    with Gallery(db) as gallery:
        events = list(reversed(gallery.events()))
    assert [(e.kind, e.reason) for e in events][:2] == [("door", "b"), ("door", "c")]
    assert events[2].kind == "error" and "1 lost" in events[2].reason
    assert writer.stored == 2


def test_doctor_says_whether_events_can_be_stored_now(tmp_path):
    from appliance.app.doctor import run_checks

    db = tmp_path / "g.db"
    Gallery(db).close()

    def events_check():
        [check] = [
            c for c in run_checks(None, db=db, headless=True, check_camera=False) if c.name == "events"
        ]
        return check

    assert events_check().ok and "writable now" in events_check().detail
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        locked = events_check()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert locked.ok and "locked by another writer" in locked.detail  # a start must not fail for that
