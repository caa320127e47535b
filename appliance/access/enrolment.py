"""Enrolment use cases: a new user from photo files, or from a few live shots at the door.

Both end in one `Gallery.enrol` transaction, so a user is stored with all their templates or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from appliance.access.matching import best_matches
from appliance.access.quality import FaceQuality, QualityLimits, assess
from appliance.domain import Face
from appliance.errors import EnrolmentError
from appliance.ports import FaceDetector, FaceEmbedder

SECOND_FACE_FRACTION = 0.4
"""A second face counts if its box side is at least this fraction of the largest face's: a person in
the far background of a photo does not spoil an enrolment, a second person beside the first does."""

SAME_SHOT_COSINE = 0.995
"""Two live shots this similar are the same pose twice; enrolment wants varied shots."""


def significant_faces(faces: list[Face]) -> list[Face]:
    """The faces large enough to count as people in the picture (see SECOND_FACE_FRACTION)."""
    if not faces:
        return []
    largest = max(min(f.width, f.height) for f in faces)
    return [f for f in faces if min(f.width, f.height) >= SECOND_FACE_FRACTION * largest]


def check_not_enrolled(
    embeddings: np.ndarray, names: np.ndarray, matrix: np.ndarray, threshold: float
) -> None:
    """Refuse faces that already match an enrolled user at or above threshold (cosine)."""
    for embedding in embeddings:
        match = best_matches(embedding, matrix, names)
        if match.user is not None and match.score >= threshold:
            raise EnrolmentError(
                f"this face already matches enrolled user {match.user!r} (score {match.score:.2f}); "
                f"to add these photos to them use `facegate users add-photos {match.user} PHOTO...`, "
                "or remove or rename that user first."
            )


def embed_photos(
    photos: Sequence[tuple[str, np.ndarray]],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    limits: QualityLimits,
) -> tuple[np.ndarray, list[FaceQuality]]:
    """One embedding per photo, each photo showing exactly one face that passes the quality gate.

    Args:
        photos: (label, RGB image) pairs; the label (the file name) is used in error messages.

    Raises:
        EnrolmentError naming the photo with no face, several faces or a poor face.
    """
    embeddings, qualities = [], []
    for label, image in photos:
        faces = significant_faces(detector.detect(image))
        if not faces:
            raise EnrolmentError(f"{label}: no face found; use a photo with the face clearly visible.")
        if len(faces) > 1:
            raise EnrolmentError(f"{label}: {len(faces)} faces found; use a photo of this person alone.")
        quality = assess(image, faces[0], limits)
        if not quality.ok:
            raise EnrolmentError(
                f"{label}: face not good enough to enrol ({quality.reason}); use a sharper, frontal, "
                "well-lit photo where the face is at least "
                f"{limits.min_face_px:.0f} px wide."
            )
        embeddings.append(embedder.embed(image, faces)[0])
        qualities.append(quality)
    return np.stack(embeddings), qualities


@dataclass
class LiveEnrolment:
    """Collects `shots` varied, good, single-face shots from the door camera.

    Feed it every frame's faces with `offer`; it says what it did, and `done` turns True when enough
    shots are taken. Pure state: the caller detects, embeds and stores.
    """

    name: str
    shots: int
    min_interval_s: float
    timeout_s: float
    started_at: float
    embeddings: list[np.ndarray] = field(default_factory=list)
    qualities: list[FaceQuality] = field(default_factory=list)
    _last_shot_at: float = float("-inf")

    @property
    def done(self) -> bool:
        """True when every shot is taken."""
        return len(self.embeddings) >= self.shots

    def timed_out(self, now: float) -> bool:
        """True once timeout_s has passed without completing."""
        return not self.done and now - self.started_at > self.timeout_s

    def wants_shot(self, now: float, faces: list[Face]) -> str | None:
        """None if this frame may give a shot, else why not (for the log)."""
        if now - self._last_shot_at < self.min_interval_s:
            return "waiting between shots"
        people = significant_faces(faces)
        if not people:
            return "no face"
        if len(people) > 1:
            return "more than one face"
        return None

    def add_shot(self, now: float, embedding: np.ndarray, quality: FaceQuality) -> str:
        """Keep a shot unless it repeats an earlier pose; returns what happened."""
        if not quality.ok:
            return f"shot skipped: {quality.reason}"
        if any(float(np.dot(embedding, e)) > SAME_SHOT_COSINE for e in self.embeddings):
            return "shot skipped: same pose as an earlier shot, move a little"
        self.embeddings.append(embedding)
        self.qualities.append(quality)
        self._last_shot_at = now
        return f"shot {len(self.embeddings)} of {self.shots}"
