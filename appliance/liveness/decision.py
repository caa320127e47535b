"""PURE: per-frame liveness cues of one tracked face -> LIVE, NOT_LIVE (with the cue) or PENDING.

No image library here: cues.py measures each frame and this module only counts and compares, so the
rules are tested with plain numbers. Two kinds of cue, as in glanced 0.4.0:

- deny cues, each of which refuses on its own: the surroundings of the face move with it (a photo or a
  phone held in a hand, seen by a fixed door camera), a flat specular glare blob (a screen or glossy
  print), screen moire (periodic peaks in the face's spectrum);
- the confirm cue, needed only where `require_confirm`: the nose moves off the plane of the eyes and
  mouth while the head turns (a print or a screen moves as one plane).

A face is judged in the first `min_observe_s` seconds of its track (so a held photo has time to betray
itself): NOT_LIVE as soon as a deny cue holds, LIVE when the time is up without one (and, where
`require_confirm`, once the confirm cue held). Either verdict is final for the track: a live person
who then moves with their hair and shoulders along, or a camera that pans, is not refused after being
judged live, and a new track (the face left view, or another face became the target) starts afresh.

Mode "challenge" adds `ChallengeState`: the track's prompt (turn left or right, drawn by check.py)
answered by the landmark yaw within a window; `combine` joins it with the passive verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Liveness(StrEnum):
    """What the check says about the tracked face so far."""

    LIVE = "live"
    NOT_LIVE = "not live"
    PENDING = "pending"


class LivenessRules(Protocol):
    """The thresholds the decision reads; `appliance.config.LivenessSettings` provides them."""

    @property
    def min_observe_s(self) -> float: ...
    @property
    def track_gap_s(self) -> float: ...
    @property
    def held_check(self) -> bool: ...
    @property
    def held_min_move(self) -> float: ...
    @property
    def held_min_fraction(self) -> float: ...
    @property
    def held_min_pairs(self) -> int: ...
    @property
    def glare_check(self) -> bool: ...
    @property
    def glare_min_fraction(self) -> float: ...
    @property
    def moire_check(self) -> bool: ...
    @property
    def moire_min_peak(self) -> float: ...
    @property
    def deny_min_frames(self) -> int: ...
    @property
    def require_confirm(self) -> bool: ...
    @property
    def parallax_min(self) -> float: ...
    @property
    def parallax_min_yaw_deg(self) -> float: ...


@dataclass(frozen=True)
class FrameCues:
    """What cues.py measured on one frame of the track (None: not measurable on this frame).

    Attributes:
        t: seconds (the loop's clock).
        held: fraction (0-1) of the tracked points around the face that moved with the face since the
            previous frame; None when the face did not move enough to tell (or on the first frame).
        glare: area of the largest flat saturated blob on and around the face, as a fraction of the
            face box area.
        moire: strength of the strongest periodic peak in the face crop's spectrum (peak over the median
            of its frequency band; about 3-6 for a live face).
        parallax: the nose's distance off the plane of the eyes and mouth relative to the track's first
            frame, in eye distances.
        yaw_change_deg: the head turn since the track's first frame, degrees (from the landmarks).
    """

    t: float
    held: float | None = None
    glare: float | None = None
    moire: float | None = None
    parallax: float | None = None
    yaw_change_deg: float | None = None


@dataclass(frozen=True)
class LivenessVerdict:
    """The check's answer after a frame; `reason` names the cue (stable text for logs and events)."""

    state: Liveness
    reason: str
    prompt: str | None = None
    """Set only on the frame where a challenge prompt was drawn: what the door must show and log."""
    prompt_s: float = 0.0
    """With `prompt`: seconds it may be answered in (how long the door shows it)."""


HELD = "held: the surroundings move with the face"
GLARE = "glare: a flat specular reflection on the face"
MOIRE = "moire: a screen's pixel pattern"
NO_CONFIRM = "no head turn seen yet"
OBSERVING = "observing"


class LivenessState:
    """The cues of one tracked face, accumulated frame by frame. Not thread-safe; one per track."""

    def __init__(self, rules: LivenessRules) -> None:
        self.rules = rules
        self.started_at: float | None = None
        self.moving_pairs = 0
        self.held_pairs = 0
        self.glare_frames = 0
        self.moire_frames = 0
        self.confirmed = False
        self._final: LivenessVerdict | None = None

    def observe(self, cues: FrameCues) -> LivenessVerdict:
        """Take one frame's cues into account and return the verdict so far."""
        if self._final is not None:
            return self._final
        r = self.rules
        if self.started_at is None:
            self.started_at = cues.t
        if r.held_check and cues.held is not None:
            self.moving_pairs += 1
            self.held_pairs += cues.held >= r.held_min_fraction
        if r.glare_check and cues.glare is not None and cues.glare >= r.glare_min_fraction:
            self.glare_frames += 1
        if r.moire_check and cues.moire is not None and cues.moire >= r.moire_min_peak:
            self.moire_frames += 1
        if (
            cues.parallax is not None
            and cues.yaw_change_deg is not None
            and abs(cues.yaw_change_deg) >= r.parallax_min_yaw_deg
            and cues.parallax >= r.parallax_min
        ):
            self.confirmed = True

        # A held photo: most of the frames where the face moved, the points around it moved along.
        if self.held_pairs >= r.held_min_pairs and 2 * self.held_pairs > self.moving_pairs:
            return self._finish(HELD)
        if self.glare_frames >= r.deny_min_frames:
            return self._finish(GLARE)
        if self.moire_frames >= r.deny_min_frames:
            return self._finish(MOIRE)
        if cues.t - self.started_at < r.min_observe_s:
            return LivenessVerdict(Liveness.PENDING, OBSERVING)
        if r.require_confirm and not self.confirmed:
            return LivenessVerdict(Liveness.PENDING, NO_CONFIRM)
        return self._finish("head turn seen" if self.confirmed else "no deny cue", Liveness.LIVE)

    @property
    def final(self) -> LivenessVerdict | None:
        """The track's verdict once it is taken (LIVE or NOT_LIVE), else None."""
        return self._final

    def _finish(self, reason: str, state: Liveness = Liveness.NOT_LIVE) -> LivenessVerdict:
        self._final = LivenessVerdict(state, reason)
        return self._final


# -- the challenge (mode = "challenge") ----------------------------------------------------------


class Prompt(StrEnum):
    """What the door asks the tracked face to do. Left and right are the person's own: turning to
    their left moves the nose towards the right of a (not mirrored) camera image, so the landmark
    yaw of cues.yaw_deg grows."""

    LEFT = "turn left"
    RIGHT = "turn right"


PROMPTS = (Prompt.LEFT, Prompt.RIGHT)
"""The prompts a track may get; check.py draws one per track with a cryptographic RNG."""


class ChallengeRules(Protocol):
    """The challenge thresholds; `appliance.config.LivenessSettings` provides them."""

    @property
    def challenge_window_s(self) -> float: ...
    @property
    def challenge_min_yaw_deg(self) -> float: ...


def not_answered(prompt: Prompt) -> str:
    """The reason of a failed challenge (after "not live: "), naming what was asked."""
    return f"challenge not answered (asked: {prompt})"


class ChallengeState:
    """One track's answer to its prompt, from the head's yaw frame by frame. One per track.

    The yaw of the first sample is the reference. The challenge is passed (LIVE) when the yaw moved
    by at least `challenge_min_yaw_deg` in the prompted direction no later than `challenge_window_s`
    seconds after `asked_at`; it fails (NOT_LIVE) when the head turned that far the other way first
    (a replayed turn has a one-in-two chance of the right direction; a wrong one must not get a second
    try), or when the window ends without an answer. Either verdict is final.
    """

    def __init__(self, prompt: Prompt, asked_at: float, rules: ChallengeRules) -> None:
        self.prompt = prompt
        self.asked_at = asked_at
        self.rules = rules
        self.reference_yaw: float | None = None
        self._final: LivenessVerdict | None = None

    def observe(self, t: float, yaw_deg: float | None) -> LivenessVerdict:
        """Take the yaw (degrees; None: no landmarks this frame) at t seconds; the verdict so far."""
        if self._final is not None:
            return self._final
        late = t - self.asked_at > self.rules.challenge_window_s
        if yaw_deg is not None and not late:
            if self.reference_yaw is None:
                self.reference_yaw = yaw_deg
            turn = yaw_deg - self.reference_yaw
            toward = turn if self.prompt is Prompt.LEFT else -turn
            if toward >= self.rules.challenge_min_yaw_deg:
                self._final = LivenessVerdict(Liveness.LIVE, f"challenge answered ({self.prompt})")
                return self._final
            if -toward >= self.rules.challenge_min_yaw_deg:
                self._final = LivenessVerdict(Liveness.NOT_LIVE, not_answered(self.prompt))
                return self._final
        if late:
            self._final = LivenessVerdict(Liveness.NOT_LIVE, not_answered(self.prompt))
            return self._final
        return LivenessVerdict(Liveness.PENDING, f"waiting for the answer ({self.prompt})")

    @property
    def final(self) -> LivenessVerdict | None:
        """The challenge's verdict once taken, else None."""
        return self._final


def combine(passive: LivenessVerdict, challenge: LivenessVerdict) -> LivenessVerdict:
    """Challenge mode's verdict: a deny cue refuses first, then a failed challenge; LIVE needs both."""
    if passive.state is Liveness.NOT_LIVE:
        return passive
    if challenge.state is Liveness.NOT_LIVE:
        return challenge
    if passive.state is Liveness.LIVE and challenge.state is Liveness.LIVE:
        return LivenessVerdict(Liveness.LIVE, f"{passive.reason}; {challenge.reason}")
    return challenge if passive.state is Liveness.LIVE else passive
