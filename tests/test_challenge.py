"""Liveness mode "challenge": the pure answer to a prompt (decision.py) on plain numbers, a prompt per
tracked face (check.py) on faces whose landmarks turn, and the prompt shown on the door's LEDs and
buzzer (gpiozero's MockFactory)."""

from __future__ import annotations

import dataclasses
import random
import time

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from appliance.config import LivenessSettings
from appliance.domain import Face
from appliance.domain import yaw_degrees as yaw_deg
from appliance.hardware.actuators import Indicators
from appliance.liveness.check import ChallengeLiveness
from appliance.liveness.decision import (
    HELD,
    ChallengeState,
    Liveness,
    LivenessVerdict,
    Prompt,
    combine,
    not_answered,
)

RULES = LivenessSettings(
    mode="challenge", min_observe_s=1.0, challenge_window_s=3.0, challenge_min_yaw_deg=15.0
)
GREEN, RED, BUZZER = 27, 22, 23


def answer(prompt: Prompt, yaws: list[tuple[float, float | None]]) -> list[LivenessVerdict]:
    """The verdicts after each (t, yaw) sample, the prompt asked at t = 0."""
    state = ChallengeState(prompt, 0.0, RULES)
    return [state.observe(t, yaw) for t, yaw in yaws]


# -- decision.py ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, sign", [(Prompt.LEFT, 1.0), (Prompt.RIGHT, -1.0)])
def test_a_turn_the_asked_way_within_the_window_passes(prompt, sign):
    # From a head already turned 5 degrees: the change counts, not the absolute yaw.
    yaws = [(i / 15, 5.0 + sign * i) for i in range(17)]  # 1 degree per frame: 15 degrees at 1.0 s
    verdicts = answer(prompt, yaws)
    assert {v.state for v in verdicts[:15]} == {Liveness.PENDING}
    assert verdicts[15].state is Liveness.LIVE and verdicts[15].reason == f"challenge answered ({prompt})"
    assert verdicts[16] == verdicts[15]  # final for the track


def test_the_least_turn_is_the_threshold_in_degrees():
    assert answer(Prompt.LEFT, [(0.0, 0.0), (0.5, 14.9)])[-1].state is Liveness.PENDING
    assert answer(Prompt.LEFT, [(0.0, 0.0), (0.5, 15.0)])[-1].state is Liveness.LIVE


@pytest.mark.parametrize("prompt, sign", [(Prompt.LEFT, -1.0), (Prompt.RIGHT, 1.0)])
def test_turning_the_wrong_way_fails_for_good(prompt, sign):
    verdicts = answer(prompt, [(0.0, 0.0), (0.5, sign * 20.0), (1.0, -sign * 40.0)])
    assert verdicts[1].state is Liveness.NOT_LIVE
    assert verdicts[1].reason == f"challenge not answered (asked: {prompt})"
    assert verdicts[2].state is Liveness.NOT_LIVE  # no second try after a wrong answer


def test_a_turn_after_the_window_fails():
    verdicts = answer(Prompt.RIGHT, [(0.0, 0.0), (2.9, -3.0), (3.1, -30.0)])
    assert verdicts[1].state is Liveness.PENDING
    assert verdicts[2].state is Liveness.NOT_LIVE
    assert verdicts[2].reason == "challenge not answered (asked: turn right)"


def test_no_turn_fails_when_the_window_ends_even_without_landmarks():
    still = [(i / 15, 2.0 * np.sin(i)) for i in range(45)]  # jitter of a face looking straight on
    assert {v.state for v in answer(Prompt.LEFT, still)} == {Liveness.PENDING}
    verdicts = answer(Prompt.LEFT, [*still, (3.2, None)])
    assert verdicts[-1].state is Liveness.NOT_LIVE
    assert verdicts[-1].reason == not_answered(Prompt.LEFT)


def test_challenge_mode_needs_the_passive_check_and_the_answer():
    live, pending = LivenessVerdict(Liveness.LIVE, "no deny cue"), LivenessVerdict(Liveness.PENDING, "x")
    held = LivenessVerdict(Liveness.NOT_LIVE, HELD)
    answered = LivenessVerdict(Liveness.LIVE, "challenge answered (turn left)")
    failed = LivenessVerdict(Liveness.NOT_LIVE, not_answered(Prompt.LEFT))
    assert combine(live, answered).state is Liveness.LIVE
    assert combine(pending, answered).state is Liveness.PENDING  # still within min_observe_s
    assert combine(live, pending).state is Liveness.PENDING
    assert combine(held, answered) == held  # a held photo that turns is still refused
    assert combine(pending, failed) == failed


# -- check.py: one prompt per tracked face ---------------------------------------------------------


def _face(x: float, y: float, nose_dx: float = 0.0, w: float = 100.0) -> Face:
    """A face box at (x, y) of side w; the nose moved nose_dx pixels right (towards image right: the
    person turned to their own left)."""
    lm = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32) * w + np.array(
        [x, y], np.float32
    )
    lm[2, 0] += nose_dx
    return Face((x, y, x + w, y + w), 0.99, lm)


IMAGE = np.dstack([np.random.default_rng(5).integers(0, 255, (480, 640), dtype=np.uint8)] * 3)


class Scripted(random.Random):
    """Prompts in a given order (tests only): the real check draws from random.SystemRandom."""

    def __init__(self, prompts: list[Prompt]) -> None:
        super().__init__(0)
        self.prompts = list(prompts)
        self.draws = 0

    def choice(self, seq):  # type: ignore[override]
        self.draws += 1
        return self.prompts.pop(0)


def test_the_landmark_yaw_grows_when_the_person_turns_to_their_left():
    assert yaw_deg(_face(0, 0).landmarks) == pytest.approx(0.0, abs=1e-6)
    assert yaw_deg(_face(0, 0, nose_dx=8).landmarks) == pytest.approx(21.8, abs=0.1)  # atan(8 / 20)


def test_a_tracked_face_that_answers_is_live_and_a_new_track_gets_a_new_prompt():
    rng = Scripted([Prompt.LEFT, Prompt.RIGHT])
    check = ChallengeLiveness(RULES, rng=rng)
    first = check.observe(IMAGE, _face(200, 150), 0.0)
    assert first.state is Liveness.PENDING and first.prompt == "turn left"
    assert first.prompt_s == RULES.challenge_window_s  # the door shows it as long as it may be answered
    verdicts = [
        check.observe(IMAGE, _face(200, 150, nose_dx=8 * min(1, i / 10)), i / 15) for i in range(1, 20)
    ]
    assert all(v.prompt is None for v in verdicts)  # asked once per track, not per frame
    assert verdicts[10].state is Liveness.PENDING  # turned at 0.67 s, but passive wants 1 s
    assert verdicts[-1].state is Liveness.LIVE

    # Another face becomes the target: a new track, a new prompt, and the turn above counts for nothing.
    other = check.observe(IMAGE, _face(450, 150, nose_dx=8), 20 / 15)
    assert other.prompt == "turn right" and other.state is Liveness.PENDING
    assert rng.draws == 2
    # It keeps the turned pose (the reference is its own first frame): no answer, so refused at 3 s.
    late = [check.observe(IMAGE, _face(450, 150, nose_dx=8), 20 / 15 + i / 15) for i in range(1, 50)]
    assert late[-1].state is Liveness.NOT_LIVE
    assert late[-1].reason == "challenge not answered (asked: turn right)"


def test_a_face_out_of_view_too_long_is_asked_again_and_the_old_prompt_is_not_reused():
    rng = Scripted([Prompt.LEFT, Prompt.LEFT])
    check = ChallengeLiveness(RULES, rng=rng)
    check.observe(IMAGE, _face(200, 150), 0.0)
    asked = check.challenge
    check.observe(IMAGE, _face(200, 150), 0.1)
    check.lost(0.2)  # a short gap keeps the track and its prompt
    assert check.observe(IMAGE, _face(200, 150), 0.25).prompt is None and check.challenge is asked
    check.lost(1.0)  # longer than track_gap_s: the track ended
    again = check.observe(IMAGE, _face(200, 150), 1.1)
    assert again.prompt == "turn left" and check.challenge is not asked
    assert check.challenge is not None and check.challenge.asked_at == 1.1  # a fresh window
    assert rng.draws == 2


def test_prompts_come_from_the_system_rng_and_are_not_one_fixed_direction():
    check = ChallengeLiveness(RULES)
    assert isinstance(check.rng, random.SystemRandom)
    prompts = set()
    for i in range(64):  # 64 tracks: both directions, but for a chance of 2**-63
        check.reset()
        prompts.add(check.observe(IMAGE, _face(200, 150), float(i)).prompt)
    assert prompts == {"turn left", "turn right"}


def test_a_held_photo_is_refused_by_the_passive_cue_even_if_it_turns_the_asked_way():
    rules = dataclasses.replace(RULES, held_min_pairs=1)
    check = ChallengeLiveness(rules, rng=Scripted([Prompt.LEFT]))

    def texture(h: int, w: int, seed: int) -> np.ndarray:
        small = np.random.default_rng(seed).integers(0, 255, (h // 6, w // 6), dtype=np.uint8)
        return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (5, 5), 1.5)

    background, sheet = texture(480, 640, 1), texture(300, 240, 2)
    verdict = None
    for i in range(10):  # a print (the face and its surroundings) slides over a still background
        dx = 6 * i
        grey = background.copy()
        grey[100:400, 130 + dx : 370 + dx] = sheet
        image = np.dstack([grey] * 3)
        verdict = check.observe(image, _face(200 + dx, 170, nose_dx=min(8, i)), i / 15)
        if verdict.state is Liveness.NOT_LIVE:
            break
    assert verdict is not None and verdict.state is Liveness.NOT_LIVE and verdict.reason == HELD


# -- the door's indicators -------------------------------------------------------------------------


def _on_times(pin) -> list[float]:
    """Seconds the pin stayed high each time (a MockPin state's timestamp is the time since the last)."""
    states = list(pin.states)
    return [b.timestamp for a, b in zip(states, states[1:], strict=False) if a.state]


def test_each_prompt_has_its_own_led_pattern_and_chirps():
    shown = {}
    for prompt in ("turn left", "turn right"):
        factory = MockFactory()
        with Indicators(GREEN, RED, BUZZER, pin_factory=factory) as ind:
            ind.prompt(prompt, 1.0)
            time.sleep(1.3)  # two flashes of 0.5 s each, then the LED stays off by itself
            assert factory.pin(GREEN).state is False
            ind.idle()
            green = _on_times(factory.pin(GREEN))
            chirps = sum(1 for s in factory.pin(BUZZER).states if s.state)
            shown[prompt] = (float(np.median(green)), chirps, len(green))
            assert [s.state for s in factory.pin(RED).states] == [False]  # red means denied only
    assert shown["turn left"][2] == shown["turn right"][2] == 2
    assert shown["turn left"][0] == pytest.approx(0.1, abs=0.05)
    assert shown["turn right"][0] == pytest.approx(0.4, abs=0.05)
    assert (shown["turn left"][1], shown["turn right"][1]) == (1, 2)
