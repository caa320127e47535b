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

SAME_PERSON_COSINE = 0.91
"""The photos (or live shots) of one enrolment must agree with each other at least this well (cosine):
a photo whose median similarity to the others is lower is taken for another person and refused.

Below the match threshold (0.956) on purpose: photos of one person taken years apart agree less
than a door face with its templates. On LFW View 2 folds 1-3 (900 same / 900 different pairs) 0.91
is where the two errors cross: 0.8% of same-person pairs fall below it and 1.1% of different-person
pairs reach it (different people: median 0.84, 99th percentile 0.91, max 0.92; same person: 1st
percentile 0.913, median 0.958). Enrolments of 3 LFW photos of one person are refused 1.1% of
the time; 2 or 3 photos plus one of someone else are caught 99.4%. Colin_Powell_0001 with
Tony_Blair_0001 scores 0.89-0.90. Look-alikes above 0.91 are left to check_not_enrolled."""


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


def agreement(embeddings: np.ndarray) -> np.ndarray:
    """Per row: the median cosine similarity of that embedding to each of the others.

    A median, not a mean or a minimum: one hard photo of a person (other year, other light) lowers a
    single pair without spoiling the set, while a photo of another person disagrees with most of the
    set, and in a half-and-half mix every photo disagrees with half the others. NaN for a single row.
    """
    vectors = np.asarray(embeddings, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"expected an (N, D) array of embeddings, got shape {vectors.shape}")
    n = len(vectors)
    if n < 2:
        return np.full(n, np.nan)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    cos = unit @ unit.T
    others = ~np.eye(n, dtype=bool)
    return np.array([float(np.median(cos[i][others[i]])) for i in range(n)])


def check_same_person(
    embeddings: np.ndarray, labels: Sequence[str], threshold: float = SAME_PERSON_COSINE
) -> None:
    """Refuse an enrolment whose photos do not all show one person (see SAME_PERSON_COSINE).

    Args:
        embeddings: (N, D) embeddings, one per photo; nothing is checked when N < 2.
        labels: N names of the photos (file names), used in the message.
        threshold: least median cosine of a photo to the others.

    Raises:
        EnrolmentError naming the photo that agrees least with the others, when it is below threshold
        (both photos when there are only two: either could be the wrong one).
    """
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(labels)} labels for {len(embeddings)} embeddings")
    scores = agreement(embeddings)
    if len(scores) < 2:
        return
    worst = int(np.argmin(scores))
    score = float(scores[worst])
    if score >= threshold:
        return
    if len(scores) == 2:
        raise EnrolmentError(
            f"{labels[0]} and {labels[1]} do not look like the same person (similarity {score:.2f}, "
            f"least {threshold:.2f}); check that both photos show the person being enrolled and "
            "leave out or replace the one that does not."
        )
    raise EnrolmentError(
        f"{labels[worst]}: this face does not look like the same person as the other photos "
        f"(median similarity {score:.2f}, least {threshold:.2f}); every photo of one enrolment must "
        f"show the same person: leave out {labels[worst]} or replace it with a photo of them."
    )


def embed_photos(
    photos: Sequence[tuple[str, np.ndarray]],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    limits: QualityLimits,
    same_person_threshold: float = SAME_PERSON_COSINE,
) -> tuple[np.ndarray, list[FaceQuality]]:
    """One embedding per photo, each photo showing exactly one face that passes the quality gate,
    and all the photos showing one person (`check_same_person`).

    Args:
        photos: (label, RGB image) pairs; the label (the file name) is used in error messages.
        same_person_threshold: least median cosine of each photo to the others.

    Raises:
        EnrolmentError naming the photo with no face, several faces, a poor face, or a face that does
        not agree with the other photos.
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
    stacked = np.stack(embeddings)
    check_same_person(stacked, [label for label, _ in photos], same_person_threshold)
    return stacked, qualities


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
    same_person_threshold: float = SAME_PERSON_COSINE
    """A shot whose median cosine to the shots already kept is lower shows someone else; it is skipped."""
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
        """Keep a shot unless it repeats an earlier pose or shows someone else; returns what happened."""
        if not quality.ok:
            return f"shot skipped: {quality.reason}"
        if any(float(np.dot(embedding, e)) > SAME_SHOT_COSINE for e in self.embeddings):
            return "shot skipped: same pose as an earlier shot, move a little"
        if self.embeddings:
            score = float(agreement(np.stack([embedding, *self.embeddings]))[0])
            if score < self.same_person_threshold:
                return (
                    f"shot skipped: not the person of the earlier shots (similarity {score:.2f}, least "
                    f"{self.same_person_threshold:.2f}); only {self.name} should stand at the camera"
                )
        self.embeddings.append(embedding)
        self.qualities.append(quality)
        self._last_shot_at = now
        return f"shot {len(self.embeddings)} of {self.shots}"
