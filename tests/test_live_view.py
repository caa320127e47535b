"""The door's live view (appliance/app/live_view.py) on the real door loop, models and a real walk-up clip:
frames written only while someone watches, at most MAX_FPS, whole (atomic), with what the door saw."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from appliance.access.door import DoorController
from appliance.access.enrolment import embed_photos
from appliance.access.loop import AccessLoop
from appliance.access.policy import AccessPolicy
from appliance.app.live_view import FRAME, INFO, MAX_FPS, WATCH_FRESH_S, WATCHING, LiveView, touch_watching
from appliance.app.wiring import quality_limits
from appliance.domain import Frame
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames
from appliance.gallery.store import Gallery
from appliance.hardware.actuators import RelayDoorLock
from appliance.vision.images import read_image


class Clock:
    """The loop's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def walkup(detector, photos) -> list[np.ndarray]:
    """A walk-up of obama2.jpg (RGB frames)."""
    image = read_image(photos["obama2.jpg"])
    return walkup_frames(head_and_shoulders(image, detector.detect(image)[0].box), n_frames=30)


@pytest.fixture
def loop(cfg, detector, embedder, photos) -> AccessLoop:
    embeddings, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    with Gallery(":memory:") as gallery:
        gallery.enrol("obama", embeddings, embedder.model_id)
        templates = gallery.templates_matrix(embedder.model_id)
    door = DoorController(RelayDoorLock(17, active_high=True, pin_factory=MockFactory()))
    return AccessLoop(
        detector=detector,
        embedder=embedder,
        templates=templates,
        policy=AccessPolicy(cfg.policy),
        door=door,
        unlock_s=cfg.policy.unlock_s,
        limits=quality_limits(cfg),
    )


def replay(loop: AccessLoop, view: LiveView, clock: Clock, frames: list[np.ndarray], dt: float) -> int:
    """Step the loop over `frames`, `dt` seconds apart, offering each to the view; frames handed."""
    handed = 0
    for i, image in enumerate(frames):
        clock.t += dt
        loop.step(Frame(image, clock.t, i), clock.t)
        handed += view.offer(loop)
    view.flush()
    return handed


def test_nothing_is_written_while_nobody_watches(tmp_path: Path, loop, walkup):
    clock = Clock()
    view = LiveView(tmp_path, clock=clock)
    try:
        assert replay(loop, view, clock, walkup[:10], 0.1) == 0  # no `watching` file at all
        touch_watching(tmp_path)
        old = time.time() - WATCH_FRESH_S - 1
        os.utime(tmp_path / WATCHING, (old, old))  # a watcher who left
        assert replay(loop, view, clock, walkup[10:20], 0.1) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == [WATCHING]
    finally:
        view.close()


def test_a_watcher_gets_the_frame_with_the_face_name_score_and_door_state(tmp_path: Path, loop, walkup):
    clock = Clock()
    view = LiveView(tmp_path, clock=clock)
    try:
        touch_watching(tmp_path)
        seconds = len(walkup) * 0.1
        handed = replay(loop, view, clock, walkup, 0.1)  # 10 fps for 3 s
        assert 1 <= handed <= seconds * MAX_FPS + 1
        assert view.frames_written == handed
        image = cv2.imread(str(tmp_path / FRAME))
        assert image is not None and image.shape[:2] == walkup[-1].shape[:2]
        info = json.loads((tmp_path / INFO).read_text())
        target = [f for f in info["faces"] if f["target"]]
        assert len(target) == 1 and target[0]["user"] == "obama" and target[0]["score"] > 0.9
        assert info["door"] == ("locked" if loop.door.is_locked else "unlocked")
        assert info["enrolment"] is None
        assert abs(info["time"] - time.time()) < 30
        # The box is drawn: the frame written differs from the camera's frame around the face.
        x1, y1, x2, y2 = (int(v) for v in target[0]["box"])
        bgr = cv2.cvtColor(walkup[-1], cv2.COLOR_RGB2BGR)
        edge = np.abs(image[y1 - 1 : y1 + 2, x1:x2].astype(int) - bgr[y1 - 1 : y1 + 2, x1:x2]).mean()
        assert edge > 20
        # The watcher leaves: the door stops writing.
        old = time.time() - WATCH_FRESH_S - 1
        os.utime(tmp_path / WATCHING, (old, old))
        written = view.frames_written
        assert replay(loop, view, clock, walkup[:10], 0.1) == 0 and view.frames_written == written
        assert sorted(p.name for p in tmp_path.iterdir()) == [WATCHING]  # and the last frame is deleted
    finally:
        view.close()


def test_enrolment_progress_is_shared(tmp_path: Path, loop, walkup):
    clock = Clock()
    view = LiveView(tmp_path, clock=clock)
    try:
        touch_watching(tmp_path)
        loop.request_enrolment("dana", shots=5, min_interval_s=0.0, timeout_s=60)
        replay(loop, view, clock, walkup[-12:], 0.6)  # the face near: shots; 0.6 s apart: all shared
        info = json.loads((tmp_path / INFO).read_text())
        assert loop.enrolment is not None, "the enrolment ended early"
        # The last frame was shared (0.6 s after the one before): its count is the session's.
        assert info["enrolment"] == {"name": "dana", "shots": 5, "taken": len(loop.enrolment.embeddings)}
        assert info["enrolment"]["taken"] >= 1
        assert info["faces"] and not any(f["target"] for f in info["faces"])  # no decision while enrolling
    finally:
        view.close()


def test_a_reader_never_sees_half_a_frame(tmp_path: Path, loop, walkup):
    clock = Clock()
    view = LiveView(tmp_path, clock=clock)
    touch_watching(tmp_path)
    stop = threading.Event()
    reads: list[bool] = []

    def reader() -> None:  # as the web process reads: whatever file is there at that instant
        while not stop.is_set():
            try:
                data = (tmp_path / FRAME).read_bytes()
            except FileNotFoundError:
                continue
            try:  # a truncated JPEG decodes to None (or with a warning), an empty one raises
                whole = (
                    data.endswith(b"\xff\xd9") and cv2.imdecode(np.frombuffer(data, np.uint8), 1) is not None
                )
            except cv2.error:
                whole = False
            reads.append(whole)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        # Frames 0.5 s apart on the loop's clock: every one is written, as fast as the writer can.
        for _ in range(3):
            replay(loop, view, clock, walkup[::3], 1.0 / MAX_FPS)
    finally:
        stop.set()
        thread.join()
        view.close()
    assert view.frames_written >= 25
    assert len(reads) > 20 and all(reads), f"{reads.count(False)} of {len(reads)} reads were not whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [FRAME, INFO, WATCHING]  # no temporary left


def test_the_door_process_shares_the_enrolment_shots_while_watched(
    cfg, embedder, enrolment_clip, tmp_path, monkeypatch
):
    from test_door_faults import Door, door_cfg

    from appliance.app.door_process import run_door

    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.stage_enrolment("dana")  # the web page's "enrol at the door"
    live = tmp_path / "live"
    touch_watching(live)
    seen: list[dict | None] = []

    def on_frame(frame: Frame) -> None:
        if frame.index == 0:
            door.hold_enrol_button()
        time.sleep(0.04)  # about the camera's pace, so that the 2 frames/s are spread over the clip
        with contextlib.suppress(FileNotFoundError):  # none written yet
            seen.append(json.loads((live / INFO).read_text())["enrolment"])

    door = Door(monkeypatch, on_frame)
    code = run_door(door_cfg(cfg, require_admin=False), source_spec=str(enrolment_clip), headless=True, db=db)
    assert code == 0
    with Gallery(db) as gallery:
        assert gallery.user("dana").templates == 3
    taken = [e["taken"] for e in seen if e is not None]
    assert taken and all(e["shots"] == 3 for e in seen if e is not None), seen
    assert taken == sorted(taken) and 1 <= taken[-1] < 3  # the shots as they were taken (3rd: done)
    assert seen[-1] is None  # enrolled: the door went back to watching for access
    print(f"enrolment progress the page saw, frame by frame: {taken}")
