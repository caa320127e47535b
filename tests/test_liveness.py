"""The liveness check alone: the pure decision (decision.py) on plain numbers, the cues (cues.py) on
images built here with a known answer, and the track binding (check.py)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from appliance.config import LivenessSettings
from appliance.domain import Face
from appliance.domain import yaw_degrees as yaw_deg
from appliance.liveness.check import PassiveLiveness, same_track
from appliance.liveness.cues import glare_fraction, held_fraction, moire_peak, nose_parallax
from appliance.liveness.decision import GLARE, HELD, MOIRE, FrameCues, Liveness, LivenessState

RULES = LivenessSettings(mode="passive", min_observe_s=1.0, held_min_fraction=0.6, held_min_pairs=2)


def run(rules: LivenessSettings, cues: list[FrameCues]) -> list[Liveness]:
    state = LivenessState(rules)
    return [state.observe(c).state for c in cues]


# -- decision.py ---------------------------------------------------------------------------------


def test_a_face_without_deny_cues_is_live_only_after_the_observation_time():
    states = run(RULES, [FrameCues(t=i / 15, held=0.1 if i % 3 else None) for i in range(20)])
    assert set(states[:15]) == {Liveness.PENDING}  # t < 1.0 s
    assert states[15:] == [Liveness.LIVE] * 5


def test_a_face_whose_surroundings_move_with_it_is_refused_for_good():
    state = LivenessState(RULES)
    verdicts = [state.observe(FrameCues(t=i / 15, held=0.9)) for i in range(3)]
    assert verdicts[0].state is Liveness.PENDING
    assert verdicts[1].state is Liveness.NOT_LIVE and verdicts[1].reason == HELD
    # Final for the track: a later frame where the photo happens to be still changes nothing.
    assert state.observe(FrameCues(t=5.0, held=None)).state is Liveness.NOT_LIVE


def test_a_face_judged_live_stays_live_for_its_track():
    # A person who, once judged, moves with hair and shoulders along (or a camera that pans).
    cues = [FrameCues(t=i / 15, held=0.1) for i in range(20)] + [
        FrameCues(t=2 + i / 15, held=0.9) for i in range(9)
    ]
    assert run(RULES, cues)[-1] is Liveness.LIVE


def test_held_frames_must_be_most_of_the_frames_where_the_face_moved():
    # A live person whose hair follows the head now and then: 2 held of 5 moving frames is not enough.
    cues = [FrameCues(t=i * 0.2, held=h) for i, h in enumerate([0.1, 0.7, 0.1, 0.1, 0.7, None, None])]
    assert run(RULES, cues)[-1] is Liveness.LIVE


def test_glare_and_moire_refuse_only_when_their_check_is_on():
    glare = [FrameCues(t=i / 15, glare=0.05, moire=30.0) for i in range(20)]
    assert run(RULES, glare)[-1] is Liveness.LIVE  # both checks are off by default
    on = dataclasses.replace(RULES, glare_check=True)
    state = LivenessState(on)
    assert [state.observe(c).reason for c in glare[:3]][-1] == GLARE
    on = dataclasses.replace(RULES, moire_check=True)
    state = LivenessState(on)
    assert [state.observe(c).reason for c in glare[:3]][-1] == MOIRE
    assert run(on, [FrameCues(t=i / 15, moire=5.0) for i in range(20)])[-1] is Liveness.LIVE


def test_the_confirm_cue_needs_the_nose_off_the_plane_during_a_real_head_turn():
    rules = dataclasses.replace(RULES, require_confirm=True, parallax_min=0.08, parallax_min_yaw_deg=12.0)
    still = [FrameCues(t=i / 15, parallax=0.01, yaw_change_deg=1.0) for i in range(30)]
    assert run(rules, still)[-1] is Liveness.PENDING
    # A bent print: landmarks jitter off the plane, but no head turn: still pending (the yaw gate).
    bent = [FrameCues(t=i / 15, parallax=0.2, yaw_change_deg=4.0) for i in range(30)]
    assert run(rules, bent)[-1] is Liveness.PENDING
    turn = still + [FrameCues(t=2.1, parallax=0.12, yaw_change_deg=-15.0)]
    assert run(rules, turn)[-1] is Liveness.LIVE


# -- cues.py -------------------------------------------------------------------------------------


def _face(x: float, y: float, w: float = 100.0) -> Face:
    """A face box at (x, y) of side w with landmarks at their usual places in it."""
    lm = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32) * w + np.array(
        [x, y], np.float32
    )
    return Face((x, y, x + w, y + w), 0.99, lm)


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 6, w // 6), dtype=np.uint8)
    # Smooth like a camera image (corners a few pixels across), not pixel noise.
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (5, 5), 1.5)


def test_held_fraction_tells_a_held_photo_from_a_head_moving_before_a_still_background():
    background = _texture(480, 640, 1)
    photo = _texture(300, 240, 2)  # the print: the face and its surroundings on one sheet
    before, after = background.copy(), background.copy()
    before[100:400, 200:440] = photo
    after[110:410, 212:452] = photo  # the whole sheet moved 12 px right, 10 px down
    f0, f1 = _face(270, 170), _face(282, 180)
    assert held_fraction(before, after, f0, f1, min_move=0.04) > 0.8

    # A live head: only the face moves; around it the background stays where it was.
    head = _texture(100, 100, 3)
    before, after = background.copy(), background.copy()
    before[170:270, 270:370] = head
    after[180:280, 282:382] = head
    assert held_fraction(before, after, f0, f1, min_move=0.04) < 0.3
    # No motion, no evidence.
    assert held_fraction(before, before, f0, f0, min_move=0.04) is None


def test_nose_parallax_is_zero_for_a_plane_and_large_for_a_nose_off_it():
    face = _face(100, 100).landmarks
    tilt = np.array([[0.9, 0.15], [-0.1, 1.05]], np.float32)
    planar = face @ tilt.T + np.array([20, -5], np.float32)  # a print turned: one affine map
    assert nose_parallax(face, planar) < 1e-3
    turned = planar.copy()
    turned[2, 0] += 15.0  # the nose swings out of the eyes-and-mouth plane
    assert nose_parallax(face, turned) > 0.15
    assert abs(yaw_deg(turned)) > abs(yaw_deg(planar)) + 10


def test_moire_peak_and_glare_fraction_find_a_screen_grid_and_a_white_blob():
    smooth = cv2.GaussianBlur(_texture(200, 200, 4), (9, 9), 3).astype(np.float32)
    yy, xx = np.mgrid[:200, :200]
    grid = smooth + 40 * np.sin(2 * np.pi * (xx + 0.3 * yy) / 4.5)
    face = _face(50, 50)
    assert moire_peak(np.clip(grid, 0, 255).astype(np.uint8), face) > 3 * moire_peak(
        smooth.astype(np.uint8), face
    )
    rgb = np.full((200, 200, 3), (180, 130, 110), np.uint8)
    assert glare_fraction(rgb, face) == 0.0
    rgb[80:100, 80:110] = 255
    assert glare_fraction(rgb, face) == pytest.approx(600 / 10000, rel=0.05)


# -- check.py: bound to the tracked face -----------------------------------------------------------


def test_a_new_face_starts_a_new_track_so_no_face_lends_its_liveness_to_another():
    assert same_track(_face(100, 100), _face(110, 104))
    assert not same_track(_face(100, 100), _face(300, 100))  # another face became the target
    assert not same_track(_face(100, 100), _face(100, 100, 200))

    check = PassiveLiveness(RULES)
    image = np.dstack([_texture(480, 640, 5)] * 3)
    for i in range(20):  # a still, textured scene: no deny cue, live after 1 s
        verdict = check.observe(image, _face(200, 150), i / 15)
    assert verdict.state is Liveness.LIVE
    # The target switches to a face elsewhere: its observation starts from zero.
    assert check.observe(image, _face(450, 150), 20 / 15).state is Liveness.PENDING
