"""PURE: turns per-frame matches into GRANT / DENY / WAIT decisions.

A single frame never opens the door: the same user must be matched in k of the last n frames
with a face, within a time window. Time is passed in (`now`, seconds on a monotonic clock), so
the policy does no I/O and is tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from appliance.access.matching import Match
from appliance.domain import Verdict


class Reason(StrEnum):
    """Why a decision was taken; short stable strings for logs, events and tests."""

    MATCHED = "matched"
    """GRANT: the same user matched in k of the last n frames."""
    CONFIRMING = "confirming"
    """WAIT: this frame matched, but fewer than k frames so far."""
    BELOW_THRESHOLD = "below threshold"
    """WAIT: the best score is under policy.match_threshold (not yet long enough to deny)."""
    AMBIGUOUS = "ambiguous"
    """WAIT: the best score passes, but the second-best user is within policy.margin."""
    NOT_IDENTIFIED = "not identified"
    """WAIT: a face is present but was not matched (e.g. it failed the quality gate)."""
    NO_FACE = "no face"
    """WAIT: nobody in view; the window is cleared."""
    COOLDOWN = "cooldown"
    """WAIT: a grant happened less than policy.cooldown_s ago."""
    UNKNOWN_FACE = "unknown face"
    """DENY: a face below threshold persisted policy.deny_after_frames frames."""
    DENY_COOLDOWN = "deny cooldown"
    """WAIT: an unknown face persists, but a deny was raised less than deny_cooldown_s ago."""


class PolicyRules(Protocol):
    """What the policy reads from its settings; `appliance.config.PolicySettings` provides it."""

    @property
    def match_threshold(self) -> float: ...
    @property
    def margin(self) -> float: ...
    @property
    def frames_needed(self) -> int: ...
    @property
    def window_frames(self) -> int: ...
    @property
    def window_s(self) -> float: ...
    @property
    def cooldown_s(self) -> float: ...
    @property
    def deny_after_frames(self) -> int: ...
    @property
    def deny_cooldown_s(self) -> float: ...


@dataclass(frozen=True)
class Decision:
    """The outcome of one frame.

    Attributes:
        verdict: GRANT (unlock now), DENY (raise a deny event now) or WAIT (nothing to do).
        reason: a Reason, stable text for logs and the event table.
        user: the matched user for GRANT and for WAIT while confirming. For DENY and the other
            WAITs it is this frame's closest (rejected) candidate, if any: a tuning hint for logs,
            not who was at the door.
        score: this frame's best cosine similarity, None without a match.
    """

    verdict: Verdict
    reason: Reason
    user: Hashable | None = None
    score: float | None = None


class AccessPolicy:
    """Stateful k-of-n decision over a stream of frames. Not thread-safe; one per camera.

    Call `observe` once per processed frame, in time order::

        policy = AccessPolicy(cfg.policy)
        # no face detected:                 policy.observe(now, None, False)
        # a face, but it failed the quality gate: policy.observe(now, None, True)
        # a face embedded as `emb`:
        match = best_matches(emb, templates.matrix, templates.names)
        decision = policy.observe(now, match, True)
        if decision.verdict is Verdict.GRANT: door.open_for(cfg.policy.unlock_s, now)
    """

    def __init__(self, rules: PolicyRules) -> None:
        if not 1 <= rules.frames_needed <= rules.window_frames:
            raise ValueError("frames_needed must be between 1 and window_frames")
        self.rules = rules
        # (time, user accepted in that frame or None): the last n frames with a face.
        self._window: deque[tuple[float, Hashable | None]] = deque(maxlen=rules.window_frames)
        self._unknown_frames = 0
        self._last_now: float | None = None
        self._cooldown_until = float("-inf")
        self._next_deny_at = float("-inf")

    def reset(self) -> None:
        """Forget the frames seen so far (e.g. after enrolment paused the loop). Cooldowns stay."""
        self._window.clear()
        self._unknown_frames = 0

    def observe(self, now: float, match: Match | None, face_present: bool) -> Decision:
        """Take one frame into account and decide.

        Args:
            now: monotonic time of the frame in seconds; must not go backwards.
            match: the best match of the face in this frame, or None if no face was matched
                (no face, or a face that failed the quality gate).
            face_present: True if a face was detected in this frame.

        Returns:
            The Decision for this frame. GRANT and DENY are edges: each is returned once, on
            the frame that completes it.
        """
        if self._last_now is not None and now < self._last_now:
            raise ValueError(f"time went backwards: {now} after {self._last_now}")
        # A gap longer than the window (camera stall, loop paused) means the frames before it
        # no longer describe who is at the door now.
        if self._last_now is not None and now - self._last_now > self.rules.window_s:
            self.reset()
        self._last_now = now

        user = match.user if match is not None else None
        # An empty gallery matches no one: no score to show (not matching.NO_SCORE's -1).
        score = match.score if match is not None and match.user is not None else None
        if not face_present:
            self.reset()
            return Decision(Verdict.WAIT, Reason.NO_FACE)
        if now < self._cooldown_until:
            # The door is open or just was: neither re-grant nor deny (a granted user turning
            # away would otherwise trip a deny while walking through).
            self.reset()
            return Decision(Verdict.WAIT, Reason.COOLDOWN, user, score)

        accepted = self._classify(match)
        self._window.append((now, accepted))
        while self._window and now - self._window[0][0] > self.rules.window_s:
            self._window.popleft()

        if accepted is not None:
            self._unknown_frames = 0
            count = sum(1 for _, u in self._window if u == accepted)
            if count >= self.rules.frames_needed:
                self._window.clear()
                self._cooldown_until = now + self.rules.cooldown_s
                return Decision(Verdict.GRANT, Reason.MATCHED, accepted, score)
            return Decision(Verdict.WAIT, Reason.CONFIRMING, accepted, score)

        if match is None:
            return Decision(Verdict.WAIT, Reason.NOT_IDENTIFIED)
        if match.user is not None and match.score >= self.rules.match_threshold:
            return Decision(Verdict.WAIT, Reason.AMBIGUOUS, user, score)

        self._unknown_frames += 1
        if self._unknown_frames < self.rules.deny_after_frames:
            return Decision(Verdict.WAIT, Reason.BELOW_THRESHOLD, user, score)
        if now < self._next_deny_at:
            return Decision(Verdict.WAIT, Reason.DENY_COOLDOWN, user, score)
        self._next_deny_at = now + self.rules.deny_cooldown_s
        return Decision(Verdict.DENY, Reason.UNKNOWN_FACE, user, score)

    def _classify(self, match: Match | None) -> Hashable | None:
        """The user this frame votes for, or None if it is not a confident match."""
        if match is None or match.user is None:
            return None
        if match.score < self.rules.match_threshold or match.lead < self.rules.margin:
            return None
        return match.user
