"""The two benchmarks of issue 13 on cached embeddings, each model trained only on people it is not tested on.

`lfw_view2` trains one model per LFW View 2 fold on the people of the other nine folds, chooses the
accuracy threshold on those nine folds' pairs and scores the tenth; EER and TAR at FAR 1e-3 are over
the 6,000 test-fold scores pooled, each fold's z-normalised by the mean and standard deviation of its
model's different-person scores on the training folds (ten heads score the ten folds, each on a scale of
its own; this puts them on one scale without looking at the test fold).
`door` runs the open-set benchmark of `facegate eval door` on each half of the people (by a hash of the
name), with the model trained on the other half, and averages the two halves. The figures come from
`appliance.evaluation.metrics`, as `facegate eval` reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.evaluation import metrics
from models.build.learning.embeddings import EmbeddedSet
from models.build.learning.methods import CohortNorm, Cosine, JointBayesian
from models.build.learning.protocol import LfwPairs, door_split, lfw_split

MethodFactory = Callable[[], Cosine | CohortNorm]


@dataclass(frozen=True)
class LfwResult:
    """LFW View 2 under the identity-disjoint protocol."""

    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    eer: float
    tar_at_far_1e3: float
    seconds: list[float]
    """Training time of each fold's model."""


def _pair_scores(method: Cosine | CohortNorm, data: EmbeddedSet, pairs: LfwPairs) -> np.ndarray:
    """Every pair's score by a fitted method (-inf where a face is missing), AS-normed for CohortNorm."""
    x, face = data.embeddings, data.has_face
    ok = face[pairs.ia] & face[pairs.ib]
    scores = np.full(pairs.ia.size, -np.inf)
    base = method.base if isinstance(method, CohortNorm) else method
    raw = base.pairs(x[pairs.ia[ok]], x[pairs.ib[ok]])
    if isinstance(method, CohortNorm):
        rows = np.unique(np.concatenate([pairs.ia[ok], pairs.ib[ok]]))
        mu, sd = method.stats(x[rows], data.people[rows])
        where = np.full(len(x), -1)
        where[rows] = np.arange(rows.size)
        ka, kb = where[pairs.ia[ok]], where[pairs.ib[ok]]
        raw = method.normalise_pairs(raw, (mu[ka], sd[ka]), (mu[kb], sd[kb]))
    scores[ok] = raw
    return scores


def lfw_view2(make: MethodFactory, data: EmbeddedSet, pairs: LfwPairs) -> LfwResult:
    """10-fold LFW accuracy with each fold's model and threshold fitted on the other nine folds."""
    n_folds = len(pairs.fold_people)
    test_scores = np.full(pairs.ia.size, -np.inf)
    accs, secs, thresholds = [], [], []
    for k in range(n_folds):
        train = lfw_split(pairs, data.people, k)
        train = train[data.has_face[train]]
        method = make().fit(data.embeddings[train], data.people[train])
        secs.append(method.seconds)
        scores = _pair_scores(method, data, pairs)
        test = pairs.fold == k
        threshold = metrics.best_threshold(scores[~test], pairs.same[~test]).threshold
        accs.append(metrics.accuracy_at(scores[test], pairs.same[test], threshold))
        thresholds.append(threshold)
        impostors = scores[~test & ~pairs.same]
        impostors = impostors[np.isfinite(impostors)]
        test_scores[test] = (scores[test] - impostors.mean()) / impostors.std()  # -inf stays -inf
    return LfwResult(
        accuracy=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        fold_accuracies=[float(a) for a in accs],
        fold_thresholds=[float(t) for t in thresholds],
        eer=metrics.eer(test_scores, pairs.same),
        tar_at_far_1e3=metrics.tar_at_far(test_scores, pairs.same, 1e-3).tar,
        seconds=secs,
    )


@dataclass(frozen=True)
class DoorHalf:
    """The door benchmark on one half of the people."""

    rank1: float
    fnir_at_fpir_1e2: float
    fnir_at_fpir_1e3: float
    gallery_size: int
    genuine_probes: int
    impostor_probes: int
    seconds: float


@dataclass(frozen=True)
class DoorResult:
    """Both directions of the door protocol and their mean."""

    rank1: float
    fnir_at_fpir_1e2: float
    fnir_at_fpir_1e3: float
    halves: list[DoorHalf]


def identity_scores_from(scores: np.ndarray, owners: np.ndarray, n_ids: int) -> np.ndarray:
    """(P, n_ids) best score of each probe over each identity's templates (the appliance's max rule)."""
    starts = np.flatnonzero(np.concatenate(([True], owners[1:] != owners[:-1])))
    out = np.maximum.reduceat(scores, starts, axis=1)
    assert out.shape[1] == n_ids
    return out


def door_half(
    make: MethodFactory, data: EmbeddedSet, test_half: int, enrol_images: int = 1, templates: str = "max"
) -> DoorHalf:
    """The door benchmark on the people of `test_half`, with the model trained on the other half.

    templates: "max", the appliance's rule (an identity scores its best template), or "centroid"
    (each identity is the normalised mean of its templates' vectors; cosine methods only).
    A gallery image without a face gives its person one template fewer; a person left with none is not
    enrolled and their probes become impostors, as in `facegate eval door`.
    """
    split = door_split(data.people, test_half, enrol_images)
    x, face, people = data.embeddings, data.has_face, data.people
    train = split.train[face[split.train]]
    method = make().fit(x[train], people[train])
    base = method.base if isinstance(method, CohortNorm) else method

    keep = face[split.gallery]
    kept_owner = split.gallery_owner[keep]
    enrolled = np.unique(kept_owner)
    renumber = np.full(int(split.gallery_owner.max(initial=-1)) + 1, -1)
    renumber[enrolled] = np.arange(enrolled.size)
    owners = renumber[kept_owner]
    probe_owner = np.where(split.probe_owner >= 0, renumber[np.maximum(split.probe_owner, 0)], -1)

    gallery_x = x[split.gallery[keep]]
    if templates == "centroid":
        unit = base.transform(gallery_x)
        sums = np.zeros((enrolled.size, unit.shape[1]))
        np.add.at(sums, owners, unit)
        gallery_x, owners = sums, np.arange(enrolled.size)
        if isinstance(base, JointBayesian):
            raise ValueError("centroid templates need a cosine method")
    elif templates != "max":
        raise ValueError(f"templates = {templates!r}: 'max' or 'centroid'")
    probe_x = x[split.probes]
    if templates == "centroid":
        # The centroid is already in the method's output space: compare it there directly.
        probe_t = base.transform(probe_x)
        raw = probe_t @ (gallery_x / np.linalg.norm(gallery_x, axis=1, keepdims=True)).T
    else:
        raw = base.matrix(probe_x, gallery_x)
    if isinstance(method, CohortNorm):
        probe_stats = method.stats(probe_x, people[split.probes])
        if templates == "centroid":
            cohort_t = base.transform(method.cohort)
            g = gallery_x / np.linalg.norm(gallery_x, axis=1, keepdims=True)
            s = g @ cohort_t.T
            top = -np.partition(-s, method.top - 1, axis=1)[:, : method.top]
            gallery_stats = (top.mean(axis=1), np.maximum(top.std(axis=1), 1e-9))
        else:
            gallery_stats = method.stats(gallery_x)
        raw = method.normalise_matrix(raw, probe_stats, gallery_stats)
    per_id = identity_scores_from(raw, owners, enrolled.size)
    per_id[~face[split.probes]] = -np.inf

    genuine = probe_owner >= 0
    rows = np.flatnonzero(genuine)
    own = per_id[rows, probe_owner[rows]]
    rivals = per_id[rows].copy()
    rivals[np.arange(rows.size), probe_owner[rows]] = -np.inf
    other = rivals.max(axis=1)
    best = per_id[~genuine].max(axis=1)
    return DoorHalf(
        rank1=metrics.rank1_rate(own, other),
        fnir_at_fpir_1e2=metrics.fnir_at_fpir(own, other, best, 1e-2).fnir,
        fnir_at_fpir_1e3=metrics.fnir_at_fpir(own, other, best, 1e-3).fnir,
        gallery_size=int(enrolled.size),
        genuine_probes=int(rows.size),
        impostor_probes=int(best.size),
        seconds=method.seconds,
    )


def door(make: MethodFactory, data: EmbeddedSet, enrol_images: int = 1, templates: str = "max") -> DoorResult:
    """Both door directions (test half 0 trained on half 1, and the reverse) and their mean."""
    halves = [door_half(make, data, h, enrol_images, templates) for h in (0, 1)]
    return DoorResult(
        rank1=float(np.mean([h.rank1 for h in halves])),
        fnir_at_fpir_1e2=float(np.mean([h.fnir_at_fpir_1e2 for h in halves])),
        fnir_at_fpir_1e3=float(np.mean([h.fnir_at_fpir_1e3 for h in halves])),
        halves=halves,
    )


@dataclass(frozen=True)
class Verdict:
    """Whether a method beats the reference beyond the noise, and why."""

    beats: bool
    lfw_gain: float
    lfw_noise: float
    door_gain: float
    door_noise: float


def beyond_noise(method: tuple[LfwResult, DoorResult], reference: tuple[LfwResult, DoorResult]) -> Verdict:
    """The shipping rule: better on both benchmarks by more than twice the standard error.

    LFW: the mean of the per-fold accuracy differences must exceed twice their standard error
    (std with ddof 1 / sqrt(10); the folds are paired, so fold difficulty cancels). Door: the FNIR at
    FPIR 1% must fall in both halves, and on average by more than twice the binomial standard error of
    the reference FNIR, sqrt(p (1 - p) / n), n the genuine probes of one half.
    """
    lfw_m, door_m = method
    lfw_r, door_r = reference
    diff = np.array(lfw_m.fold_accuracies) - np.array(lfw_r.fold_accuracies)
    lfw_noise = 2.0 * float(np.std(diff, ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else math.inf
    lfw_gain = float(diff.mean())
    gains = [
        r.fnir_at_fpir_1e2 - m.fnir_at_fpir_1e2 for m, r in zip(door_m.halves, door_r.halves, strict=True)
    ]
    door_noise = 2.0 * float(
        np.mean(
            [
                math.sqrt(r.fnir_at_fpir_1e2 * (1 - r.fnir_at_fpir_1e2) / max(r.genuine_probes, 1))
                for r in door_r.halves
            ]
        )
    )
    door_gain = float(np.mean(gains))
    beats = lfw_gain > lfw_noise and min(gains) > 0 and door_gain > door_noise
    return Verdict(bool(beats), lfw_gain, lfw_noise, door_gain, door_noise)
