"""Quality gates: which faces the door refuses to judge, and which face it looks at."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from appliance.access.quality import (
    QualityLimits,
    assess,
    laplacian_variance,
    pick_target,
    roll_degrees,
    yaw_degrees,
)
from appliance.domain import Face

FRONTAL = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float32)


def face(box, landmarks=FRONTAL) -> Face:
    return Face(box=box, score=0.99, landmarks=landmarks)


def rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = points.mean(axis=0)
    return ((points - centre) @ np.array([[c, s], [-s, c]], np.float32)) + centre


def test_frontal_face_has_no_roll_or_yaw():
    assert roll_degrees(FRONTAL) == pytest.approx(0.0)
    assert yaw_degrees(FRONTAL) == pytest.approx(0.0)


@pytest.mark.parametrize("angle", [-30.0, 10.0, 40.0])
def test_roll_is_the_angle_of_the_eye_line(angle):
    assert roll_degrees(rotate(FRONTAL, angle)) == pytest.approx(angle, abs=1e-3)


def test_yaw_grows_as_the_nose_moves_towards_an_eye_and_ignores_roll():
    turned = FRONTAL.copy()
    turned[2, 0] += 20  # nose at the right eye's x: a strongly turned head
    assert yaw_degrees(turned) == pytest.approx(45.0)
    assert yaw_degrees(rotate(turned, 20.0)) == pytest.approx(45.0, abs=1e-3)
    mirrored = FRONTAL.copy()
    mirrored[2, 0] -= 10
    assert yaw_degrees(mirrored) < 0


def test_blur_lowers_laplacian_variance():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(0, 255, (64, 64)).astype(np.float32)
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    assert laplacian_variance(blurred) < laplacian_variance(sharp) / 10


def textured_image(level: float = 128.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    grey = np.clip(rng.normal(level, 30, (200, 200)), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_assess_names_the_failed_gate():
    limits = QualityLimits(min_face_px=80)
    good = face((10, 10, 110, 110))
    assert assess(textured_image(), good, limits).ok
    assert assess(textured_image(), face((10, 10, 50, 50)), limits).reason == "face too small"
    tilted = face((10, 10, 110, 110), rotate(FRONTAL, 40))
    assert assess(textured_image(), tilted, limits).reason == "head tilted"
    assert assess(textured_image(level=10), good, limits).reason == "too dark"
    assert assess(textured_image(level=250), good, limits).reason == "too bright"
    flat = np.full((200, 200, 3), 128, np.uint8)
    assert assess(flat, good, limits).reason == "blurred"


def test_pick_target_prefers_the_large_central_face_and_ignores_small_ones():
    shape = (480, 640, 3)
    centre = face((270, 190, 370, 290))
    edge_small = face((0, 0, 60, 60))
    assert pick_target([edge_small, centre], shape, min_face_px=80) is centre
    assert pick_target([edge_small], shape, min_face_px=80) is None
    big_edge = face((500, 300, 640, 440))
    slightly_smaller_centre = face((265, 185, 395, 315))
    assert pick_target([big_edge, slightly_smaller_centre], shape, 80) is slightly_smaller_centre
