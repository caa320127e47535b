"""PURE: cosine similarity and 1:N matching of a face embedding against the gallery's templates.

Embeddings are float vectors of dimension D (128 for the dlib ResNet). Templates come from the
gallery already L2-normalised, so a cosine similarity is one dot product: matching 100k templates
is one (M, D) @ (D,) product and two reductions, a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

NO_SCORE = -1.0
"""The lowest possible cosine similarity, used as the score when there is nobody to compare with."""


@dataclass(frozen=True)
class Match:
    """The best candidate for one face.

    Attributes:
        user: the owner label (user name as the gallery gives it) of the best template; None when
            the gallery has no templates.
        score: cosine similarity in [-1, 1] of the best user's closest template.
        second_score: the same for the best *other* user; NO_SCORE (-1) when there is none, so
            `score - second_score` is the best user's lead.
        second_user: that other user, or None.
    """

    user: Hashable | None
    score: float
    second_score: float = NO_SCORE
    second_user: Hashable | None = None

    @property
    def lead(self) -> float:
        """How far the best user is ahead of the second best (compare with policy.margin)."""
        return self.score - self.second_score


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """`x` scaled to unit length along `axis` (float32); raises ValueError on a zero or non-finite vector."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("cannot normalise a zero, NaN or infinite vector")
    return x / norms


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors of the same length: 1 same direction, -1 opposite.

    Works for vectors of any length (they need not be normalised). Raises ValueError for a zero
    vector, whose direction is undefined.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.size} and {b.size}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0 or not np.isfinite(na * nb):
        raise ValueError("cosine similarity of a zero, NaN or infinite vector is undefined")
    # Rounding can push |cos| a hair past 1; clip so callers can rely on the range.
    return float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))


def similarities(probe: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Cosine similarity (M,) float32 of one probe (D,) with each row of `templates` (M, D).

    The probe is normalised here; template rows must already be unit length (the gallery
    guarantees it), which saves re-normalising the whole gallery for every face.
    """
    probe = np.asarray(probe, dtype=np.float32).ravel()
    templates = np.asarray(templates, dtype=np.float32)
    if templates.ndim != 2 or templates.shape[1] != probe.size:
        raise ValueError(f"templates must be (M, {probe.size}) to match the probe, got {templates.shape}")
    scores = templates @ l2_normalise(probe)
    return np.clip(scores, -1.0, 1.0, out=scores)


def best_matches(probe: np.ndarray, templates: np.ndarray, owners: np.ndarray) -> Match:
    """The best user for a probe embedding, scored per user as the max over that user's templates.

    Args:
        probe: (D,) embedding of the face at the door.
        templates: (M, D) unit-length template embeddings; M may be 0.
        owners: (M,) owner label of each template row (user names, or ids).

    Returns:
        Match(user, score, second_score, second_user). The second best is the best template of
        any *other* user, so several templates of the best user never count as a rival. With no
        templates, Match(None, -1, -1).
    """
    owners = np.asarray(owners)
    if owners.shape != (len(templates),):
        raise ValueError(f"owners must be ({len(templates)},), one per template row, got {owners.shape}")
    if len(templates) == 0:
        return Match(None, NO_SCORE)
    scores = similarities(probe, templates)
    best = int(np.argmax(scores))
    user = owners[best]
    # Per-user max is only needed for the two best users: the runner-up is the best template of
    # anyone else, so one masked max replaces a group-by over all users.
    rivals = np.flatnonzero(owners != user)
    if rivals.size == 0:
        return Match(_plain(user), float(scores[best]))
    second = int(rivals[np.argmax(scores[rivals])])
    return Match(_plain(user), float(scores[best]), float(scores[second]), _plain(owners[second]))


def _plain(label: np.generic | Hashable) -> Hashable:
    """numpy scalar -> Python str/int, so a Match compares and prints like the gallery's names."""
    return label.item() if isinstance(label, np.generic) else label
