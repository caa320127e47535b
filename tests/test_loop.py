"""The door loop end to end on real models and real video, with gpiozero's mock pins for the relay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from spies import CountingDetector

from appliance.access.door import DoorController
from appliance.access.enrolment import embed_photos
from appliance.access.loop import AccessLoop, DecisionRecord
from appliance.access.policy import AccessPolicy
from appliance.app.wiring import quality_limits
from appliance.domain import Templates
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames, write_video
from appliance.gallery.store import Gallery
from appliance.hardware.actuators import RelayDoorLock
from appliance.hardware.cameras import open_source
from appliance.vision.detector import MtcnnDetector
from appliance.vision.images import read_image
from appliance.vision.tracking import TrackingDetector

RELAY = 17


@pytest.fixture(scope="module")
def clips(tmp_path_factory, detector, photos) -> dict[str, Path]:
    """Walk-up videos (mp4, decoded back by OpenCV) made from one photo each."""
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for name in ("obama2.jpg", "biden.jpg"):
        image = read_image(photos[name])
        portrait = head_and_shoulders(image, detector.detect(image)[0].box)
        out[name] = write_video(walkup_frames(portrait, n_frames=45), folder / f"{name}.mp4")
    return out


@pytest.fixture(scope="module")
def obama_templates(cfg, detector, embedder, photos) -> Templates:
    embeddings, _ = embed_photos(
        [("obama.jpg", read_image(photos["obama.jpg"]))], detector, embedder, quality_limits(cfg)
    )
    with Gallery(":memory:") as gallery:
        gallery.enrol("obama", embeddings, embedder.model_id)
        return gallery.templates_matrix(embedder.model_id)


class Recorder:
    """Runs a loop over a clip and records the relay level after every frame.

    The loop has no liveness check ([liveness] mode = "off"): the walk-up clips are photos moved in
    front of the camera, which the check refuses (tests/test_loop_liveness.py).
    """

    def __init__(self, cfg, detector, embedder, templates: Templates):
        self.factory = MockFactory()
        self.door = DoorController(RelayDoorLock(RELAY, active_high=True, pin_factory=self.factory))
        self.decisions: list[DecisionRecord] = []
        self.relay: list[tuple[float, bool]] = []
        self.loop = AccessLoop(
            detector=detector,
            embedder=embedder,
            templates=templates,
            policy=AccessPolicy(cfg.policy),
            door=self.door,
            unlock_s=cfg.policy.unlock_s,
            limits=quality_limits(cfg),
            on_decision=self.decisions.append,
        )

    def replay(self, clip: Path, after_s: float = 0.0) -> None:
        source = open_source(str(clip))
        try:
            for frame in source.frames():
                self.loop.step(frame, frame.t)
                self.relay.append((frame.t, bool(self.factory.pin(RELAY).state)))
            # Time runs on after the clip: the hold timer must relock the door.
            self.door.tick(self.relay[-1][0] + after_s)
            self.relay.append((self.relay[-1][0] + after_s, bool(self.factory.pin(RELAY).state)))
        finally:
            source.close()
            self.door.close()
            self.factory.reset()


def test_enrolled_person_walking_up_is_granted_once_and_door_relocks(
    cfg, detector, embedder, obama_templates, clips
):
    run = Recorder(cfg, detector, embedder, obama_templates)
    run.replay(clips["obama2.jpg"], after_s=cfg.policy.unlock_s + 0.1)
    grants = [d for d in run.decisions if d.decision == "grant"]
    assert [d.user for d in grants] == ["obama"]
    assert grants[0].score is not None and grants[0].score >= cfg.policy.match_threshold
    assert run.relay[0] == (0.0, False)  # locked at start
    opened = [t for t, high in run.relay if high]
    assert opened and opened[0] == pytest.approx(grants[0].t)
    assert max(opened) - opened[0] <= cfg.policy.unlock_s
    assert run.relay[-1][1] is False  # relocked after the hold time


def test_stranger_is_never_granted(cfg, detector, embedder, obama_templates, clips):
    run = Recorder(cfg, detector, embedder, obama_templates)
    run.replay(clips["biden.jpg"])
    assert [d for d in run.decisions if d.decision == "grant"] == []
    assert not any(high for _, high in run.relay)


def test_nobody_enrolled_means_no_grant_and_a_deny_for_a_lingering_face(cfg, detector, embedder, clips):
    empty = Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32))
    run = Recorder(cfg, detector, embedder, empty)
    run.replay(clips["obama2.jpg"])
    assert [d.decision for d in run.decisions] == ["deny"]
    assert run.decisions[0].user is None and run.decisions[0].reason == "unknown face"


def test_exit_button_opens_the_door_without_a_face(cfg, detector, embedder, obama_templates, clips):
    run = Recorder(cfg, detector, embedder, obama_templates)
    run.loop.press_exit()
    run.replay(clips["biden.jpg"])
    assert run.decisions[0].reason == "exit button" and run.relay[0][1] is True


class FailingDetector:
    def __init__(self, after: int):
        self.calls, self.after = 0, after

    def detect(self, image):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("detector crashed")
        return []


def test_a_crash_mid_loop_leaves_the_door_locked(cfg, embedder, obama_templates, clips):
    run = Recorder(cfg, FailingDetector(after=3), embedder, obama_templates)
    run.door.open_for(60.0, now=0.0)  # the door was open when the loop crashed
    with pytest.raises(RuntimeError, match="detector crashed"):
        run.replay(clips["biden.jpg"])
    assert run.door.is_locked


def live_enrolment_run(cfg, detector, embedder, templates: Templates, clip: Path):
    """Replay a clip with an enrolment requested at the first frame; returns (recorder, stored sessions)."""
    stored = []

    def store(session):
        stored.append(session)
        names = np.concatenate([templates.names, np.array([session.name] * len(session.embeddings))])
        rows = [templates.matrix] if len(templates.matrix) else []
        return Templates(names, np.concatenate([*rows, np.stack(session.embeddings)]).astype(np.float32))

    run = Recorder(cfg, detector, embedder, templates)
    run.loop.store_enrolment = store
    run.loop.duplicate_threshold = cfg.enrolment.duplicate_threshold
    run.loop.request_enrolment("newcomer", shots=3, min_interval_s=0.1, timeout_s=30.0)
    run.replay(clip)
    return run, stored


def test_enrolment_at_the_door_takes_varied_shots_then_lets_the_person_in(
    cfg, detector, embedder, enrolment_clip
):
    empty = Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32))
    run, stored = live_enrolment_run(cfg, detector, embedder, empty, enrolment_clip)
    assert [s.name for s in stored] == ["newcomer"]
    shots = np.stack(stored[0].embeddings)
    assert len(shots) == 3 and all(q.ok for q in stored[0].qualities)
    assert np.all(shots @ shots.T - np.eye(3) < 0.995)  # no two shots of the same pose
    # After the enrolment the rest of the clip is judged with the new templates: the newcomer gets in.
    assert [d.user for d in run.decisions if d.decision == "grant"] == ["newcomer"]


def test_enrolment_at_the_door_refuses_someone_already_enrolled(
    cfg, detector, embedder, obama_templates, enrolment_clip
):
    run, stored = live_enrolment_run(cfg, detector, embedder, obama_templates, enrolment_clip)
    assert stored == []
    assert run.loop.enrolment is None  # the session ended (refused), the loop went back to watching


def test_enrolment_shots_come_from_a_full_search_of_every_frame(cfg, detector, embedder, enrolment_clip):
    # The door loop follows faces between full searches, which can miss a second person stepping in
    # for a few frames; a shot with two people in it must be refused, so enrolment searches every frame.
    followed = CountingDetector(MtcnnDetector(cfg.detector.models_dir, min_face_size=80))
    full = CountingDetector(detector)
    empty = Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32))
    run = Recorder(cfg, TrackingDetector(followed, 5), embedder, empty)
    run.loop.enrol_detector = full
    calls_when_stored = []

    def store(session):
        calls_when_stored.append((len(full.calls), len(followed.calls), run.loop.frames_processed))
        return Templates(np.array([session.name] * len(session.embeddings)), np.stack(session.embeddings))

    run.loop.store_enrolment = store
    run.loop.request_enrolment("newcomer", shots=3, min_interval_s=0.1, timeout_s=30.0)
    run.replay(enrolment_clip)
    [(full_calls, followed_calls, frames)] = calls_when_stored
    assert full_calls == frames >= 3  # every frame of the enrolment was searched whole
    assert followed_calls == 0
    assert len(full.calls) == full_calls  # then back to following
    assert len(followed.calls) >= run.loop.frames_processed - frames


def test_a_failed_store_ends_the_enrolment_not_the_door_loop(
    cfg, detector, embedder, enrolment_clip, tmp_path
):
    # `facegate enroll newcomer --at-door`, then `facegate enroll newcomer photos...` takes the name,
    # then the button: storing the door enrolment fails in the gallery (GalleryError, not EnrolmentError).
    empty = Templates(np.array([], dtype=str), np.zeros((0, 0), np.float32))
    with Gallery(tmp_path / "g.db") as gallery:
        unit = np.ones((1, 128), np.float32) / np.sqrt(128)
        gallery.enrol("newcomer", unit, "some-other-model")
        run = Recorder(cfg, detector, embedder, empty)

        def store(session):
            gallery.enrol(session.name, np.stack(session.embeddings), embedder.model_id)
            return gallery.templates_matrix(embedder.model_id)

        run.loop.store_enrolment = store
        run.loop.request_enrolment("newcomer", shots=3, min_interval_s=0.1, timeout_s=30.0)
        run.replay(enrolment_clip)  # raised GalleryError out of the loop before the fix
    assert run.loop.enrolment is None
    assert run.loop.frames_processed == 90  # every frame of the clip was still judged
    assert run.door.is_locked
