"""Following faces between frames (appliance/vision/tracking.py) with the real MTCNN models.

Frames come from a walk-up clip made from a packaged photo (appliance/evaluation/walkup.py), so these run on a
fresh machine too.
"""

from __future__ import annotations

import numpy as np
import pytest
from spies import CountingDetector

from appliance.errors import ConfigError
from appliance.evaluation.walkup import head_and_shoulders, walkup_frames
from appliance.vision.detector import MtcnnDetector, iou
from appliance.vision.images import read_image
from appliance.vision.tracking import TrackingDetector


@pytest.fixture(scope="module")
def door_mtcnn(cfg) -> MtcnnDetector:
    return MtcnnDetector(cfg.detector.models_dir, variant=cfg.detector.variant, min_face_size=80)


@pytest.fixture(scope="module")
def clip(photos, door_mtcnn) -> list[np.ndarray]:
    """A 640x480 walk-up of Obama; the face is at least 80 px from about frame 10 on."""
    photo = read_image(photos["obama.jpg"], max_side=800)
    face = door_mtcnn.detect(photo)[0]
    return walkup_frames(head_and_shoulders(photo, face.box), n_frames=30, end_scale=0.7)


def test_follows_a_moving_face_as_full_detection_finds_it(clip, door_mtcnn):
    tracker = TrackingDetector(door_mtcnn, redetect_every=5)
    followed = 0
    for frame in clip:
        full = door_mtcnn.detect(frame)
        tracked = tracker.detect(frame)
        # Following may keep a face that has just dropped under the full search's minimum size
        # (a face at the 80 px limit comes and goes between pyramid levels), but never misses one.
        assert len(tracked) <= 1 and len(full) <= len(tracked)
        if full:
            overlap = iou(np.array(full[0].box), np.array([tracked[0].box]))[0]
            assert overlap >= 0.7  # what MTCNN's own NMS counts as the same detection
            assert np.abs(full[0].landmarks - tracked[0].landmarks).max() <= 0.05 * full[0].width
            followed += 1
    assert followed >= 15
    assert tracker.full_detections < len(clip) - 10  # most face frames were re-checks, not searches


def test_searches_the_whole_frame_every_n_frames_while_following(clip, door_mtcnn):
    counting = CountingDetector(door_mtcnn)
    tracker = TrackingDetector(counting, redetect_every=3)
    late = clip[-7:]  # the person stands at the door: a face in every frame
    for frame in late:
        assert len(tracker.detect(frame)) == 1
    assert counting.calls == ["full", "near", "near", "full", "near", "near", "full"]


def test_a_lost_face_gets_a_full_search_in_the_same_frame(clip, door_mtcnn):
    counting = CountingDetector(door_mtcnn)
    tracker = TrackingDetector(counting, redetect_every=10)
    assert len(tracker.detect(clip[-1])) == 1
    empty = np.full_like(clip[-1], 100)
    assert tracker.detect(empty) == []
    assert counting.calls == ["full", "near", "full"]
    # nothing to follow: every frame is searched until a face appears again
    assert tracker.detect(empty) == []
    assert len(tracker.detect(clip[-1])) == 1
    assert counting.calls[-2:] == ["full", "full"]


def test_redetect_every_1_searches_every_frame(clip, door_mtcnn):
    counting = CountingDetector(door_mtcnn)
    tracker = TrackingDetector(counting, redetect_every=1)
    for frame in clip[-3:]:
        tracker.detect(frame)
    assert counting.calls == ["full"] * 3


def test_detect_near_finds_nothing_far_from_a_face(clip, door_mtcnn):
    frame = clip[-1]
    face = door_mtcnn.detect(frame)[0]
    assert door_mtcnn.detect_near(frame, []) == []
    assert len(door_mtcnn.detect_near(frame, [face.box])) == 1
    x1, y1, x2, y2 = face.box
    far = (0.0, 0.0, x2 - x1, y2 - y1) if x1 > frame.shape[1] / 2 else (540.0, 0.0, 640.0, 100.0)
    assert door_mtcnn.detect_near(frame, [far]) == []


def test_redetect_every_must_be_positive(door_mtcnn):
    with pytest.raises(ConfigError, match="redetect_every"):
        TrackingDetector(door_mtcnn, redetect_every=0)
