"""The door loop: frames -> target face -> quality gate -> embedding -> 1:N match -> policy -> door.

No hardware library and no file is touched here: the detector, embedder, door and indicators come in
through `ports`, so the same loop runs on a Pi, in headless replay and in tests.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from appliance.access.door import DoorController
from appliance.access.enrolment import LiveEnrolment, check_not_enrolled
from appliance.access.matching import Match, best_matches
from appliance.access.policy import AccessPolicy
from appliance.access.quality import QualityLimits, assess, pick_target
from appliance.domain import Face, Frame, Templates, Verdict
from appliance.errors import ApplianceError, EnrolmentError
from appliance.liveness.decision import Liveness, LivenessVerdict
from appliance.ports import FaceDetector, FaceEmbedder, FrameSource

log = logging.getLogger(__name__)

UNLOCK_REQUEST_TTL_S = 5.0
"""A remote unlock request not reached by a frame within this many seconds is dropped, seconds."""


class Indicators(Protocol):
    """LEDs and buzzer (appliance.hardware.actuators.Indicators)."""

    def granted(self) -> None: ...
    def denied(self) -> None: ...
    def capturing(self, on: bool) -> None: ...
    def idle(self) -> None: ...
    def prompt(self, prompt: str, seconds: float) -> None: ...


class LivenessCheck(Protocol):
    """The liveness of the target face (appliance.liveness.check.PassiveLiveness, ChallengeLiveness)."""

    def observe(self, image: np.ndarray, face: Face, now: float) -> LivenessVerdict: ...
    def lost(self, now: float) -> None: ...


@dataclass(frozen=True)
class DecisionRecord:
    """One grant or deny, as printed with --json and stored as an event.

    Attributes:
        t: seconds into the input (replay) or since the camera opened (live).
        frame: index of the frame that completed the decision.
        decision: "grant" or "deny".
        user: the granted user; for a deny, None (nobody was recognised).
        score: the best cosine similarity in that frame, if a face was embedded.
        reason: why, e.g. "matched", "unknown face", "exit button".
    """

    t: float
    frame: int
    decision: str
    user: str | None
    score: float | None
    reason: str

    def as_json(self) -> dict[str, object]:
        """The JSON object scripts read (keys t, frame, decision, user, score, reason)."""
        return {
            "t": round(self.t, 3),
            "frame": self.frame,
            "decision": self.decision,
            "user": self.user,
            "score": None if self.score is None else round(self.score, 4),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class EnrolmentOutcome:
    """What a live enrolment ended with: the new user's name, or an error text."""

    name: str
    stored: bool
    message: str


class AccessLoop:
    """Runs the door decision for each frame. One per camera; not thread-safe except where noted.

    Args:
        detector, embedder: the models.
        templates: the gallery's current templates for embedder.model_id.
        policy: the k-of-n decision.
        door: the strike, with its hold timer.
        unlock_s: seconds the door stays open after a grant or an exit-button press.
        limits: the quality gate.
        indicators: LEDs and buzzer, or None.
        on_decision: called with every grant and deny (print, store as event).
        heartbeat: called after every frame (the systemd watchdog).
        store_enrolment: called with a finished LiveEnrolment; stores it and returns the new templates.
        duplicate_threshold: a live enrolment matching an enrolled user this closely is refused.
        enrol_detector: the detector for enrolment shots, searching every frame whole; default
            `detector` (pass the full search when `detector` follows faces between frames).
        liveness: the liveness check of the target face, or None ([liveness] mode = "off"). The
            target's matches count only once it is live; a face found not live is denied with
            reason "not live: ..." once per track.
    """

    def __init__(
        self,
        *,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        templates: Templates,
        policy: AccessPolicy,
        door: DoorController,
        unlock_s: float,
        limits: QualityLimits,
        indicators: Indicators | None = None,
        on_decision: Callable[[DecisionRecord], None] = lambda record: None,
        heartbeat: Callable[[], None] = lambda: None,
        store_enrolment: Callable[[LiveEnrolment], Templates] | None = None,
        duplicate_threshold: float = 1.0,
        enrol_detector: FaceDetector | None = None,
        liveness: LivenessCheck | None = None,
    ) -> None:
        self.detector = detector
        # Enrolment shots need every face in view searched for on every frame (a shot with a second
        # person in it is refused), so a detector that follows faces between frames is not enough.
        self.enrol_detector = enrol_detector or detector
        self.embedder = embedder
        self.templates = templates
        self.policy = policy
        self.door = door
        self.unlock_s = unlock_s
        self.limits = limits
        self.indicators = indicators
        self.on_decision = on_decision
        self.heartbeat = heartbeat
        self.store_enrolment = store_enrolment
        self.duplicate_threshold = duplicate_threshold
        self.enrolment: LiveEnrolment | None = None
        self.liveness = liveness
        self._not_live_denied = False  # this track's "not live" deny was raised already
        self.frames_processed = 0
        # The frame and target face of the last access decision, for the face picture of a grant or deny.
        self.decision_face: tuple[np.ndarray, Face] | None = None
        # What the last frame showed, for the admin page's live view (app/live_view.py): the frame, the
        # faces found, the target's best match (None: no target embedded). Read between frames.
        self.last_frame: Frame | None = None
        self.last_faces: list[Face] = []
        self.last_match: Match | None = None
        # Set from other threads (signal handler, button callbacks); read by the loop between frames.
        self.stop_requested = threading.Event()
        self._pending_templates: Templates | None = None
        self._exit_pressed = threading.Event()
        self._unlock_requests: collections.deque[tuple[str, float]] = collections.deque()
        self._enrol_request: tuple[str, float, float, int] | None = None

    # -- requests from other threads -----------------------------------------------------------

    def replace_templates(self, templates: Templates) -> None:
        """Use new templates from the next frame on (SIGHUP reload). Thread-safe."""
        self._pending_templates = templates

    def press_exit(self) -> None:
        """The request-to-exit button was pressed. Thread-safe."""
        self._exit_pressed.set()

    def request_unlock(self, reason: str) -> None:
        """Unlock from the next frame on, as the exit button does; `reason` names who asked (a remote
        command). The grant it makes has the same hold time and relock as any other. A request that
        finds no frame within UNLOCK_REQUEST_TTL_S (a stalled camera) is dropped, never obeyed late.
        Thread-safe."""
        self._unlock_requests.append((reason, time.monotonic()))

    def request_enrolment(self, name: str, shots: int, min_interval_s: float, timeout_s: float) -> None:
        """Start capturing a new user from the next frame on. Thread-safe."""
        self._enrol_request = (name, min_interval_s, timeout_s, shots)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, source: FrameSource, now_of: Callable[[Frame], float]) -> None:
        """Process frames until the source ends or stop_requested is set.

        Args:
            now_of: the decision clock for a frame: frame.t on replay, the monotonic clock on a
                live camera.
        """
        for frame in source.frames():
            if self.stop_requested.is_set():
                break
            self.step(frame, now_of(frame))
            self.heartbeat()

    def step(self, frame: Frame, now: float) -> DecisionRecord | None:
        """Process one frame; returns the grant or deny it completed, if any."""
        self.frames_processed += 1
        self.last_frame, self.last_faces, self.last_match = frame, [], None
        self.door.tick(now)
        if self._pending_templates is not None:
            self.templates, self._pending_templates = self._pending_templates, None
            self.policy.reset()
        if self._exit_pressed.is_set():
            self._exit_pressed.clear()
            self.door.open_for(self.unlock_s, now)
            return self._emit(DecisionRecord(frame.t, frame.index, "grant", None, None, "exit button"))
        while self._unlock_requests:
            reason, asked_at = self._unlock_requests.popleft()
            if time.monotonic() - asked_at > UNLOCK_REQUEST_TTL_S:
                log.warning("%s dropped: no frame within %.0f s", reason, UNLOCK_REQUEST_TTL_S)
                continue
            self.door.open_for(self.unlock_s, now)
            return self._emit(DecisionRecord(frame.t, frame.index, "grant", None, None, reason))
        if self._enrol_request is not None:
            name, interval, timeout, shots = self._enrol_request
            self._enrol_request = None
            self.enrolment = LiveEnrolment(name, shots, interval, timeout, started_at=now)
            if self.indicators:
                self.indicators.capturing(True)
            log.info("enrolment of %s started: look at the camera", name)
        if self.enrolment is not None:
            self._enrol_step(frame, now)
            return None
        return self._access_step(frame, now)

    def _access_step(self, frame: Frame, now: float) -> DecisionRecord | None:
        faces = self.detector.detect(frame.image)
        self.last_faces = faces
        target = pick_target(faces, frame.image.shape, self.limits.min_face_px)
        self.decision_face = None if target is None else (frame.image, target)
        live = self._liveness(frame, target, now)
        if target is None:
            decision = self.policy.observe(now, None, face_present=bool(faces))
        elif live is not None and live.state is Liveness.NOT_LIVE:
            return self._refuse_not_live(frame, now, live)
        else:
            quality = assess(frame.image, target, self.limits)
            if not quality.ok:
                log.debug("frame %d: face skipped, %s", frame.index, quality.reason)
                decision = self.policy.observe(now, None, face_present=True)
            else:
                embedding = self.embedder.embed(frame.image, [target])[0]
                match = best_matches(embedding, self.templates.matrix, self.templates.names)
                self.last_match = match
                if live is not None and live.state is not Liveness.LIVE:
                    match = None  # not yet live: the face waits, matched or not
                decision = self.policy.observe(now, match, face_present=True)
        if decision.verdict is Verdict.GRANT:
            self.door.open_for(self.unlock_s, now)
            if self.indicators:
                self.indicators.granted()
            user = None if decision.user is None else str(decision.user)
            return self._emit(
                DecisionRecord(frame.t, frame.index, "grant", user, decision.score, decision.reason)
            )
        if decision.verdict is Verdict.DENY:
            if self.indicators:
                self.indicators.denied()
            return self._emit(
                DecisionRecord(frame.t, frame.index, "deny", None, decision.score, decision.reason)
            )
        return None

    def _liveness(self, frame: Frame, target: Face | None, now: float) -> LivenessVerdict | None:
        """The target's liveness (None with no check or no target); a lost face may end its track."""
        if self.liveness is None:
            return None
        if target is None:
            self.liveness.lost(now)
            return None
        verdict = self.liveness.observe(frame.image, target, now)
        if verdict.prompt is not None:  # challenge mode: a new track was asked to turn its head
            log.info("liveness challenge at frame %d: %s", frame.index, verdict.prompt)
            if self.indicators:
                self.indicators.prompt(verdict.prompt, verdict.prompt_s)
        if verdict.state is not Liveness.NOT_LIVE:
            self._not_live_denied = False  # a new track: its own refusal will be reported
        return verdict

    def _refuse_not_live(self, frame: Frame, now: float, live: LivenessVerdict) -> DecisionRecord | None:
        """A deny event (red LED) the first time this track is found not live; then the face only waits."""
        self.policy.observe(now, None, face_present=True)
        if self._not_live_denied:
            return None
        self._not_live_denied = True
        if self.indicators:
            self.indicators.denied()
        return self._emit(
            DecisionRecord(frame.t, frame.index, "deny", None, None, f"not live: {live.reason}")
        )

    def _enrol_step(self, frame: Frame, now: float) -> None:
        session = self.enrolment
        assert session is not None
        if session.timed_out(now):
            self._finish_enrolment(EnrolmentOutcome(session.name, False, "timed out"))
            return
        faces = self.enrol_detector.detect(frame.image)
        self.last_faces = faces
        why_not = session.wants_shot(now, faces)
        if why_not is not None:
            return
        face = max(faces, key=lambda f: f.width * f.height)
        quality = assess(frame.image, face, self.limits)
        if not quality.ok:  # no need to embed a shot that will not be kept
            log.debug("enrolment of %s: shot skipped, %s", session.name, quality.reason)
            return
        embedding = self.embedder.embed(frame.image, [face])[0]
        log.info("enrolment of %s: %s", session.name, session.add_shot(now, embedding, quality))
        if not session.done:
            return
        try:
            if len(self.templates.matrix):
                check_not_enrolled(
                    np.stack(session.embeddings),
                    self.templates.names,
                    self.templates.matrix,
                    self.duplicate_threshold,
                )
            if self.store_enrolment is None:
                raise EnrolmentError("this loop has no gallery to store an enrolment in")
            self.templates = self.store_enrolment(session)
            self._finish_enrolment(
                EnrolmentOutcome(session.name, True, f"enrolled with {session.shots} shots")
            )
        except ApplianceError as exc:
            # Any failure to store (a refused face, a staged name taken meanwhile, a locked or full
            # gallery) ends this enrolment, never the door loop.
            self._finish_enrolment(EnrolmentOutcome(session.name, False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - nor does an unexpected one: the door keeps working
            log.exception("enrolment of %s: storing it failed unexpectedly", session.name)
            self._finish_enrolment(EnrolmentOutcome(session.name, False, f"{type(exc).__name__}: {exc}"))

    def _finish_enrolment(self, outcome: EnrolmentOutcome) -> None:
        self.enrolment = None
        self.policy.reset()
        if self.indicators:
            self.indicators.capturing(False)
            (self.indicators.granted if outcome.stored else self.indicators.denied)()
        log.info(
            "enrolment of %s %s: %s", outcome.name, "done" if outcome.stored else "failed", outcome.message
        )

    def _emit(self, record: DecisionRecord) -> DecisionRecord:
        # DEBUG: `run` and `demo` print each decision as a line of their own (stdout, the journal under
        # systemd); an INFO copy here would interleave a second, differently worded line with them.
        log.debug(
            "%s %s (score %s, %s) at frame %d",
            record.decision,
            record.user or "unknown",
            "-" if record.score is None else f"{record.score:.3f}",
            record.reason,
            record.frame,
        )
        self.on_decision(record)
        return record
