"""Pure evaluation metrics: 1:1 verification, open-set 1:N identification, face detection.

No I/O here. Every function takes numpy arrays (or sequences of them) and returns plain floats or
arrays. Conventions shared by all of them:

- A comparison is *accepted* when ``score >= threshold``.
- A score of ``-inf`` means "no face was found", so nothing was compared. It is never accepted, at any
  threshold this module returns, and it is never used as a threshold itself.
- A rate whose denominator is empty (no genuine pairs, no impostors, no ground-truth faces) is
  undefined and comes back as ``nan``, so a report on a small set prints ``nan`` instead of crashing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# The smallest finite threshold: it accepts every finite score and rejects -inf (no face).
_LOWEST_THRESHOLD = float(np.nextafter(-np.inf, 0.0))


def _as_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; use -inf for a pair that could not be compared")
    return s, y


def _rate(count: np.ndarray | int, total: int) -> np.ndarray:
    """count / total as float64, nan where total is 0 (an undefined rate)."""
    c = np.asarray(count, dtype=np.float64)
    return c / total if total > 0 else np.full_like(c, np.nan)


def _accepted_counts(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of `sorted_scores` (ascending) are >= each threshold."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")


# --------------------------------------------------------------------------------------------
# 1:1 verification (LFW pairs, deepface pairs)
# --------------------------------------------------------------------------------------------


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of a verification test.

    Args:
        scores: similarity per pair (cosine in [-1, 1]; -inf when a face was missing).
        labels: True for a same-person (genuine) pair.

    Returns:
        (far, tar, thresholds), one entry per distinct finite score plus a first point at
        threshold +inf (nothing accepted). Thresholds descend, far and tar never decrease. Tied
        scores are one threshold, so a tie is never split between accepted and rejected.
        far is nan throughout when there is no impostor pair, tar when there is no genuine pair.
    """
    s, y = _as_scores_labels(scores, labels)
    finite = np.unique(s[np.isfinite(s)])[::-1]
    thresholds = np.concatenate(([np.inf], finite))
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    tar = _rate(_accepted_counts(pos, thresholds), pos.size)
    far = _rate(_accepted_counts(neg, thresholds), neg.size)
    # +inf scores would be "accepted" at +inf by >=; they are not meaningful similarities.
    tar[0] = 0.0 if pos.size else np.nan
    far[0] = 0.0 if neg.size else np.nan
    return far, tar, thresholds


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate: where the false accept rate equals the false reject rate (1 - TAR).

    Linearly interpolated between the two ROC points that bracket the crossing, the usual
    convention for a step-shaped ROC. nan if there are no genuine or no impostor pairs.
    """
    far, tar, _ = roc(scores, labels)
    if np.isnan(far).any() or np.isnan(tar).any():
        return math.nan
    diff = far - (1.0 - tar)  # rises from -1 at threshold +inf
    after = int(np.argmax(diff >= 0.0)) if (diff >= 0.0).any() else len(diff) - 1
    if diff[after] < 0.0:
        # Every finite score accepted and FAR still below FRR (the -inf pairs keep FRR up):
        # the curves never cross, the best equal point is the last one.
        return float((far[after] + 1.0 - tar[after]) / 2.0)
    if after == 0:
        return float(far[0])
    d0, d1 = diff[after - 1], diff[after]
    alpha = d0 / (d0 - d1)
    return float(far[after - 1] + alpha * (far[after] - far[after - 1]))


class TarAtFar(NamedTuple):
    """An operating point chosen for a FAR budget."""

    tar: float
    """Fraction of genuine pairs accepted."""
    threshold: float
    """Accept when score >= threshold."""


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far_target: float) -> TarAtFar:
    """The highest TAR whose FAR is at most `far_target`, and its threshold.

    With N impostor pairs the achievable FAR values are multiples of 1/N, so a target below 1/N
    allows no false accept at all. A group of tied impostor scores is accepted or rejected whole.
    """
    far, tar, thresholds = roc(scores, labels)
    if np.isnan(far).any() or np.isnan(tar).any():
        return TarAtFar(math.nan, math.nan)
    ok = np.flatnonzero(far <= far_target)  # far never decreases, and far[0] == 0
    i = int(ok[-1])
    return TarAtFar(float(tar[i]), float(thresholds[i]))


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified right when accepting score >= threshold. nan if empty."""
    s, y = _as_scores_labels(scores, labels)
    if s.size == 0:
        return math.nan
    return float(np.mean((s >= threshold) == y))


class BestThreshold(NamedTuple):
    """The threshold that classifies the most pairs right."""

    threshold: float
    accuracy: float


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> BestThreshold:
    """The threshold maximising verification accuracy on these pairs.

    Candidates are the midpoints between consecutive distinct finite scores, the lowest finite
    score (accept everything that has a face) and the number just above the highest score (reject
    everything). Several candidates often reach the same best accuracy; the lower median of them,
    in threshold order, is returned, so the choice is deterministic and sits inside the optimal
    range rather than at its edge. (nan, nan) on empty input.
    """
    s, y = _as_scores_labels(scores, labels)
    finite = np.unique(s[np.isfinite(s)])
    if finite.size == 0:
        return BestThreshold(math.nan, math.nan if s.size == 0 else float(np.mean(~y)))
    candidates = np.concatenate(
        ([finite[0]], (finite[:-1] + finite[1:]) / 2.0, [np.nextafter(finite[-1], np.inf)])
    )
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    correct = _accepted_counts(pos, candidates) + (neg.size - _accepted_counts(neg, candidates))
    best = np.flatnonzero(correct == correct.max())
    i = int(best[(best.size - 1) // 2])
    return BestThreshold(float(candidates[i]), float(correct[i] / s.size))


@dataclass(frozen=True)
class KFoldAccuracy:
    """Cross-validated verification accuracy (the LFW View 2 protocol).

    Attributes:
        accuracies: per fold, accuracy on that fold with the threshold chosen on all other folds.
        thresholds: per fold, the threshold used on it.
        mean: mean of `accuracies`.
        std: population standard deviation (ddof=0) of `accuracies`, as most LFW tables report.
    """

    accuracies: np.ndarray
    thresholds: np.ndarray
    mean: float
    std: float


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> KFoldAccuracy:
    """Accuracy per fold, each with a threshold fitted on the other folds.

    Args:
        scores, labels: as for `roc`.
        folds: fold id per pair (any integers); at least two distinct ids.
    """
    s, y = _as_scores_labels(scores, labels)
    f = np.asarray(folds).ravel()
    if f.shape != s.shape:
        raise ValueError(f"folds and scores differ in length: {f.size} vs {s.size}")
    ids = np.unique(f)
    if ids.size < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accs = np.empty(ids.size)
    thrs = np.empty(ids.size)
    for k, fold in enumerate(ids):
        test = f == fold
        thrs[k] = best_threshold(s[~test], y[~test]).threshold
        accs[k] = accuracy_at(s[test], y[test], thrs[k])
    return KFoldAccuracy(accs, thrs, float(np.mean(accs)), float(np.std(accs)))


# --------------------------------------------------------------------------------------------
# Open-set 1:N identification (the door)
# --------------------------------------------------------------------------------------------
#
# Per genuine probe (a person who is in the gallery) we need two numbers: `own`, the score against
# their own identity, and `other`, the best score against any other identity (-inf if there is no
# other). Per impostor probe (a person not in the gallery): `best`, the best score against anyone.
# The door grants a genuine probe as themselves when own >= threshold and no other identity scores
# higher (a tie with another identity is not counted against the probe).


def _probe_arrays(own: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(own, dtype=np.float64).ravel()
    x = np.asarray(other, dtype=np.float64).ravel()
    if o.shape != x.shape:
        raise ValueError(f"own and other scores differ in length: {o.size} vs {x.size}")
    return o, x


def rank1_rate(own: np.ndarray, other: np.ndarray) -> float:
    """Fraction of genuine probes whose own identity scores highest (closed-set rank-1).

    A probe with no face (own = -inf) is a miss. nan if there are no genuine probes.
    """
    o, x = _probe_arrays(own, other)
    if o.size == 0:
        return math.nan
    return float(np.mean((o >= x) & np.isfinite(o)))


def fpir(impostor_best: np.ndarray, threshold: float) -> float:
    """False positive identification rate: fraction of impostors whose best score >= threshold."""
    b = np.asarray(impostor_best, dtype=np.float64).ravel()
    if b.size == 0:
        return math.nan
    return float(np.mean((b >= threshold) & np.isfinite(b)))


def fnir(own: np.ndarray, other: np.ndarray, threshold: float) -> float:
    """False negative identification rate: fraction of genuine probes not granted as themselves.

    A probe fails when own < threshold, or another identity scores higher than its own. A probe
    with no face (own = -inf) always fails.
    """
    o, x = _probe_arrays(own, other)
    if o.size == 0:
        return math.nan
    granted = (o >= threshold) & (o >= x) & np.isfinite(o)
    return float(1.0 - np.mean(granted))


class FnirAtFpir(NamedTuple):
    """An open-set operating point chosen for an FPIR budget."""

    fnir: float
    threshold: float
    """Accept when the best score >= threshold."""


def fnir_at_fpir(
    own: np.ndarray, other: np.ndarray, impostor_best: np.ndarray, fpir_target: float
) -> FnirAtFpir:
    """FNIR at the smallest threshold whose FPIR is at most `fpir_target`.

    With N impostors at most floor(target * N) of them may be accepted, so the threshold lies just
    above the next-highest impostor score (one float step above it). Tied impostor scores are
    accepted or rejected together, so the achieved FPIR can be below the target. The threshold is
    never below the lowest finite float, so a probe without a face is never accepted.
    (nan, nan) when there are no impostors; fnir is nan when there are no genuine probes.
    """
    b = np.sort(np.asarray(impostor_best, dtype=np.float64).ravel())[::-1]
    if b.size == 0:
        return FnirAtFpir(math.nan, math.nan)
    # The small epsilon stops 0.29 * 100 = 28.999999999999996 from rounding the budget down.
    allowed = math.floor(fpir_target * b.size + 1e-9)
    if allowed >= b.size:
        threshold = _LOWEST_THRESHOLD
    else:
        threshold = max(float(np.nextafter(b[allowed], np.inf)), _LOWEST_THRESHOLD)
    return FnirAtFpir(fnir(own, other, threshold), threshold)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b`.

    Args:
        a: (N, 4) boxes x1, y1, x2, y2 in pixels (continuous coordinates, no +1).
        b: (M, 4) boxes.

    Returns:
        (N, M) float64 in [0, 1]; 0 where both boxes are empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class ImageDetections:
    """Ground truth and detector output for one image.

    Attributes:
        gt_boxes: (G, 4) x1, y1, x2, y2 pixels.
        gt_ignore: (G,) True for an ignore region (a box flagged invalid, a face too small to
            count): a detection on it is neither a true nor a false positive.
        det_boxes: (D, 4) x1, y1, x2, y2 pixels.
        det_scores: (D,) detector confidence.
        det_ignore: (D,) True for a detection outside the evaluated range (say, too small): if
            it matches no counted face it is IGNORED rather than an FP, the COCO rule for size
            ranges. None: every detection counts.
    """

    gt_boxes: np.ndarray
    gt_ignore: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_ignore: np.ndarray | None = None


# Outcome of one detection after matching.
TP, FP, IGNORED = 1, 0, -1


def match_detections(image: ImageDetections, iou_threshold: float = 0.5) -> np.ndarray:
    """Label each detection TP, FP or IGNORED by greedy matching in descending score order.

    Each detection takes the unmatched counted face it overlaps most (IoU >= `iou_threshold`) and
    is a TP. Failing that, if it overlaps an ignore region that much, it is IGNORED (several
    detections may fall on one ignore region). Otherwise it is an FP, including a second detection
    of an already matched face. This is the COCO rule; it differs from VOC's only in letting a
    detection move on to its second-best face when the best one is already taken.

    Returns:
        (D,) int array of TP / FP / IGNORED, in the order of `image.det_boxes`.
    """
    gt = np.asarray(image.gt_boxes, dtype=np.float64).reshape(-1, 4)
    ignore = np.asarray(image.gt_ignore, dtype=bool).ravel()
    scores = np.asarray(image.det_scores, dtype=np.float64).ravel()
    outcome = np.full(scores.size, FP, dtype=np.int64)
    if scores.size and gt.shape[0]:
        overlaps = iou(np.asarray(image.det_boxes).reshape(-1, 4), gt)
        taken = np.zeros(gt.shape[0], dtype=bool)
        for d in np.argsort(-scores, kind="stable"):
            free = overlaps[d] * (~ignore & ~taken)
            g = int(np.argmax(free))
            if free[g] >= iou_threshold and free[g] > 0:
                taken[g] = True
                outcome[d] = TP
            elif ignore.any() and overlaps[d][ignore].max() >= iou_threshold:
                outcome[d] = IGNORED
    if image.det_ignore is not None:
        outcome[(outcome == FP) & np.asarray(image.det_ignore, dtype=bool).ravel()] = IGNORED
    return outcome


class DetectionScore(NamedTuple):
    """Average precision and final recall over a set of images."""

    ap: float
    """All-point interpolated average precision (VOC 2010+); nan when no face counts."""
    recall: float
    """Counted faces found at any score; nan when no face counts."""
    faces: int
    """Counted (non-ignored) ground-truth faces."""
    detections: int
    """Detections that were TP or FP (ignored ones excluded)."""


def average_precision(images: Sequence[ImageDetections], iou_threshold: float = 0.5) -> DetectionScore:
    """Average precision at an IoU threshold, pooled over images.

    Detections are ranked by score across all images. Precision and recall are taken only at
    distinct scores, so the result does not depend on the order of tied detections. The
    precision envelope (the running maximum from the right) is integrated over recall, every
    point counted (VOC 2010 and later, not the 11-point VOC 2007 rule). No detections with
    faces present gives 0.
    """
    scores: list[np.ndarray] = []
    outcomes: list[np.ndarray] = []
    faces = 0
    for image in images:
        faces += int(np.count_nonzero(~np.asarray(image.gt_ignore, dtype=bool)))
        scores.append(np.asarray(image.det_scores, dtype=np.float64).ravel())
        outcomes.append(match_detections(image, iou_threshold))
    s = np.concatenate(scores) if scores else np.empty(0)
    o = np.concatenate(outcomes) if outcomes else np.empty(0, dtype=np.int64)
    counted = o != IGNORED
    s, o = s[counted], o[counted]
    if faces == 0:
        return DetectionScore(math.nan, math.nan, 0, int(s.size))
    if s.size == 0:
        return DetectionScore(0.0, 0.0, faces, 0)
    order = np.argsort(-s, kind="stable")
    s, tp = s[order], (o[order] == TP)
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(~tp)
    # Last index of each group of tied scores: the only points a threshold can produce.
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    recall = tp_cum[last] / faces
    precision = tp_cum[last] / (tp_cum[last] + fp_cum[last])
    mrec = np.concatenate(([0.0], recall))
    mpre = np.concatenate(([0.0], precision))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    return DetectionScore(ap, float(recall[-1]), faces, int(s.size))
