"""The liveness checks of the door loop: one track's cues (cues.py) judged by decision.py, passive, or
passive plus a random turn-left/turn-right challenge answered by the same track.

Liveness is bound to the tracked face: when the target face jumps (another face became the target)
or is out of view for more than [liveness] track_gap_s, the cues start again, so a live person beside
a held photo cannot lend the photo their liveness. A shorter loss (a missed detection, a blink of
motion blur) keeps the track.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Protocol

import numpy as np

from appliance.domain import Face, yaw_degrees
from appliance.liveness.cues import CueMeter
from appliance.liveness.decision import (
    PROMPTS,
    ChallengeRules,
    ChallengeState,
    LivenessRules,
    LivenessState,
    LivenessVerdict,
    combine,
)

SAME_TRACK_SHIFT = 0.5
"""The target is the same face when its box centre moved less than this many face widths..."""
SAME_TRACK_SCALE = 1.5
"""...and its width changed by less than this factor since the previous frame."""


def same_track(prev: Face, face: Face) -> bool:
    """True when `face` is plausibly `prev` one frame later."""
    pc = np.array([(prev.box[0] + prev.box[2]) / 2, (prev.box[1] + prev.box[3]) / 2])
    fc = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
    ratio = max(face.width, 1e-6) / max(prev.width, 1e-6)
    shift = float(np.linalg.norm(fc - pc)) / max(prev.width, 1e-6)
    return shift < SAME_TRACK_SHIFT and 1 / SAME_TRACK_SCALE < ratio < SAME_TRACK_SCALE


class PassiveLiveness:
    """Per-frame liveness of the door loop's target face (`observe`), reset when the track ends."""

    def __init__(self, rules: LivenessRules) -> None:
        self.rules = rules
        self.meter = CueMeter(
            rules.held_min_move,
            rules.held_min_fraction,
            held=rules.held_check,
            glare=rules.glare_check,
            moire=rules.moire_check,
        )
        self.state = LivenessState(rules)
        self._prev: Face | None = None
        self._seen_at = float("-inf")

    def reset(self) -> None:
        """End the track: the next face starts a new one."""
        self.meter.reset()
        self.state = LivenessState(self.rules)
        self._prev = None

    def lost(self, now: float) -> None:
        """No target face in this frame, at `now` seconds: the track ends once the gap is too long."""
        if now - self._seen_at > self.rules.track_gap_s:
            self.reset()

    def observe(self, image: np.ndarray, face: Face, now: float) -> LivenessVerdict:
        """The verdict on `face` (the loop's target in `image`, RGB uint8) at `now`, seconds."""
        gap = now - self._seen_at > self.rules.track_gap_s
        if self._prev is not None and (gap or not same_track(self._prev, face)):
            self.reset()
        self._prev, self._seen_at = face, now
        if self.state.final is not None:
            return self.state.final  # judged: the rest of the track costs nothing
        return self.state.observe(self.meter.measure(image, face, now))


class ChallengeRulesAll(LivenessRules, ChallengeRules, Protocol):
    """The passive thresholds and the challenge's, as [liveness] holds them."""


class ChallengeLiveness(PassiveLiveness):
    """Passive liveness plus a challenge: each new track is given a random prompt (turn left or
    right), which the same track must answer within [liveness] challenge_window_s seconds.

    Args:
        rng: where prompts come from. The default, `random.SystemRandom` (the OS's CSPRNG, as
            `secrets` uses), cannot be predicted from earlier prompts; a seeded `random.Random` is for
            tests and simulations only.
    """

    def __init__(self, rules: ChallengeRulesAll, rng: random.Random | None = None) -> None:
        self.challenge: ChallengeState | None = None
        super().__init__(rules)
        self.challenge_rules: ChallengeRules = rules
        self.rng = rng if rng is not None else random.SystemRandom()

    def reset(self) -> None:
        """End the track: the next face gets a new prompt."""
        super().reset()
        self.challenge = None

    def observe(self, image: np.ndarray, face: Face, now: float) -> LivenessVerdict:
        """The verdict on `face` at `now` (see PassiveLiveness.observe); on the first frame of a track
        it carries the prompt drawn for it (`prompt`), for the door to show."""
        passive = super().observe(image, face, now)  # ends the track first when the face changed
        asked = None
        if self.challenge is None:
            self.challenge = ChallengeState(self.rng.choice(PROMPTS), now, self.challenge_rules)
            asked = str(self.challenge.prompt)
        verdict = combine(passive, self.challenge.observe(now, yaw_degrees(face.landmarks)))
        if asked is None:
            return verdict
        return dataclasses.replace(verdict, prompt=asked, prompt_s=self.challenge_rules.challenge_window_s)
