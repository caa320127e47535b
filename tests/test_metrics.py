"""Metrics on small hand-made score sets whose answers are worked out in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.evaluation import metrics
from appliance.evaluation.metrics import FP, IGNORED, TP, ImageDetections

# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

# Genuine: 0.9, 0.8, 0.3. Impostor: 0.8, 0.2. The 0.8 tie mixes one of each.
SCORES = np.array([0.9, 0.8, 0.8, 0.3, 0.2])
LABELS = np.array([1, 1, 0, 1, 0], dtype=bool)


def test_roc_points_one_per_distinct_score_and_never_split_a_tie():
    far, tar, thr = metrics.roc(SCORES, LABELS)
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.8, 0.3, 0.2])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 1, 1])
    # At 0.8 the genuine and the impostor are accepted together: no point (far 0, tar 2/3).
    np.testing.assert_allclose(far, [0, 0, 0.5, 0.5, 1])


def test_roc_never_accepts_a_missing_face():
    far, tar, thr = metrics.roc([0.9, -np.inf, 0.1], [1, 1, 0])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.1])
    np.testing.assert_allclose(tar, [0, 0.5, 0.5])
    np.testing.assert_allclose(far, [0, 0, 1])


def test_roc_of_empty_or_one_sided_input_is_nan_not_a_crash():
    far, tar, thr = metrics.roc([], [])
    assert np.isnan(far).all() and np.isnan(tar).all() and thr.tolist() == [np.inf]
    far, tar, _ = metrics.roc([0.5, 0.4], [1, 1])
    assert np.isnan(far).all()
    np.testing.assert_allclose(tar, [0, 0.5, 1])


def test_roc_rejects_nan_scores_and_length_mismatch():
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc([0.5, np.nan], [1, 0])
    with pytest.raises(ValueError, match="length"):
        metrics.roc([0.5, 0.4], [1])


def test_eer_interpolates_between_the_bracketing_points():
    # FRR = 1 - TAR: [1, 2/3, 1/3, 0, 0]; FAR - FRR crosses zero between 0.9 and 0.8:
    # from -2/3 to +1/6, so 4/5 of the way; FAR there = 0.8 * 0.5 = 0.4 (and FRR too).
    assert metrics.eer(SCORES, LABELS) == pytest.approx(0.4)


def test_eer_is_zero_when_separable_and_half_when_interleaved():
    assert metrics.eer([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0]) == 0.0
    assert metrics.eer([0.9, 0.7, 0.5, 0.3], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(metrics.eer([0.9], [1]))


def test_tar_at_far_takes_the_last_point_within_budget():
    assert metrics.tar_at_far(SCORES, LABELS, 0.4) == pytest.approx((1 / 3, 0.9))
    assert metrics.tar_at_far(SCORES, LABELS, 0.5) == pytest.approx((1.0, 0.3))
    # A budget below 1/N impostors allows no false accept at all.
    assert metrics.tar_at_far(SCORES, LABELS, 1e-3) == pytest.approx((1 / 3, 0.9))
    assert all(math.isnan(v) for v in metrics.tar_at_far([], [], 1e-3))


def test_best_threshold_maximises_accuracy():
    # Candidates 0.2, 0.25, 0.55, 0.85, >0.9 classify 3, 4, 3, 3, 2 of 5 right.
    best = metrics.best_threshold(SCORES, LABELS)
    assert best.threshold == pytest.approx(0.25)
    assert best.accuracy == pytest.approx(0.8)


def test_best_threshold_breaks_ties_by_lower_median_of_optimal_candidates():
    # Impostor 0.1, genuine 0.2, impostor 0.3, genuine 0.4: 0.15 and 0.35 both get 3 of 4 right.
    best = metrics.best_threshold([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    assert best == pytest.approx((0.15, 0.75))
    # Shuffling the input does not change the choice.
    assert metrics.best_threshold([0.4, 0.3, 0.1, 0.2], [1, 0, 0, 1]) == best


def test_best_threshold_with_missing_faces_and_empty_input():
    best = metrics.best_threshold([0.9, -np.inf, 0.1], [1, 1, 0])
    assert best == pytest.approx((0.5, 2 / 3))
    assert all(math.isnan(v) for v in metrics.best_threshold([], []))


def test_kfold_fits_each_threshold_on_the_other_folds():
    # fold 0: genuine 0.9, impostor 0.25; fold 1: 0.8, 0.2; fold 2 runs low: 0.4, 0.0.
    scores = [0.9, 0.25, 0.8, 0.2, 0.4, 0.0]
    labels = [1, 0, 1, 0, 1, 0]
    folds = [7, 7, 3, 3, 5, 5]  # any ids; sorted order is 3, 5, 7
    result = metrics.kfold_accuracy(scores, labels, folds)
    # Fold 3 (0.8/0.2) trained on 0.0,0.25|0.4,0.9 -> 0.325: right. Fold 5 (0.4/0.0) trained on
    # 0.2,0.25|0.8,0.9 -> 0.525: the genuine 0.4 is rejected. Fold 7 trained on 0.0,0.2|0.4,0.8 -> 0.3.
    np.testing.assert_allclose(result.thresholds, [0.325, 0.525, 0.3])
    np.testing.assert_allclose(result.accuracies, [1.0, 0.5, 1.0])
    assert result.mean == pytest.approx(5 / 6)
    assert result.std == pytest.approx(np.std([1.0, 0.5, 1.0]))


def test_kfold_needs_two_folds():
    with pytest.raises(ValueError, match="two folds"):
        metrics.kfold_accuracy([0.5, 0.4], [1, 0], [0, 0])


scores_strategy = st.lists(
    st.tuples(st.sampled_from([-np.inf, -0.5, 0.0, 0.1, 0.3, 0.3, 0.7, 0.9]), st.booleans()),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(scores_strategy)
def test_roc_is_monotone_and_best_threshold_beats_every_score_threshold(pairs):
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    far, tar, thr = metrics.roc(s, y)
    assert np.all(np.diff(thr) < 0)
    for rate in (far, tar):
        if not np.isnan(rate).any():
            assert np.all(np.diff(rate) >= 0) and rate.min() >= 0 and rate.max() <= 1
    best = metrics.best_threshold(s, y)
    assert best.accuracy == pytest.approx(metrics.accuracy_at(s, y, best.threshold))
    for t in list(s[np.isfinite(s)]) + [np.inf]:
        assert metrics.accuracy_at(s, y, t) <= best.accuracy + 1e-12
    if y.any() and (~y).any():
        point = metrics.tar_at_far(s, y, 0.25)
        assert metrics.accuracy_at(s[~y], y[~y], point.threshold) >= 0.75 - 1e-12  # FAR <= 0.25
        assert 0.0 <= metrics.eer(s, y) <= 1.0


# --------------------------------------------------------------------------------------------
# Open-set identification (the door)
# --------------------------------------------------------------------------------------------

# Genuine probes: 0 clear hit; 1 loses to another identity; 2 lowish; 3 tie with another (not a
# failure); 4 no face.
OWN = np.array([0.9, 0.7, 0.6, 0.8, -np.inf])
OTHER = np.array([0.2, 0.75, 0.1, 0.8, -np.inf])
IMPOSTORS = np.array([0.65, 0.5, 0.3, -np.inf])


def test_rank1_counts_ties_as_hits_and_missing_faces_as_misses():
    assert metrics.rank1_rate(OWN, OTHER) == pytest.approx(3 / 5)
    assert math.isnan(metrics.rank1_rate([], []))


def test_fnir_at_fpir_picks_smallest_threshold_within_budget():
    # 4 impostors, budget 1/4: one may pass, so the threshold is just above the 2nd best (0.5).
    fnir, thr = metrics.fnir_at_fpir(OWN, OTHER, IMPOSTORS, 0.25)
    assert thr == np.nextafter(0.5, np.inf)
    assert metrics.fpir(IMPOSTORS, thr) == 0.25
    assert metrics.fpir(IMPOSTORS, 0.5) == 0.5  # any lower threshold breaks the budget
    assert fnir == pytest.approx(2 / 5)  # probe 1 (outscored) and probe 4 (no face)


def test_fnir_at_fpir_with_no_false_accept_allowed():
    fnir, thr = metrics.fnir_at_fpir(OWN, OTHER, IMPOSTORS, 1e-2)
    assert thr == np.nextafter(0.65, np.inf)
    assert fnir == pytest.approx(3 / 5)  # now probe 2 (0.6) fails too


def test_fnir_at_fpir_never_accepts_a_missing_face():
    # A budget of 1 lets every impostor pass, but the one without a face still is not accepted.
    fnir, thr = metrics.fnir_at_fpir(OWN, OTHER, IMPOSTORS, 1.0)
    assert np.isfinite(thr)
    assert metrics.fpir(IMPOSTORS, thr) == 0.75
    assert fnir == pytest.approx(2 / 5)


def test_fnir_at_fpir_rejects_tied_impostors_together():
    impostors = np.array([0.6, 0.6, 0.1, 0.0])
    _, thr = metrics.fnir_at_fpir(OWN, OTHER, impostors, 0.25)
    assert metrics.fpir(impostors, thr) == 0.0  # accepting one 0.6 would accept both: FPIR 0.5


def test_fnir_at_fpir_budget_is_not_lost_to_float_rounding():
    impostors = np.arange(100) / 100.0  # 0.29 * 100 = 28.999999999999996 in floats
    _, thr = metrics.fnir_at_fpir(OWN, OTHER, impostors, 0.29)
    assert metrics.fpir(impostors, thr) == pytest.approx(0.29)


def test_fnir_at_fpir_empty_inputs():
    assert all(math.isnan(v) for v in metrics.fnir_at_fpir(OWN, OTHER, [], 1e-2))
    fnir, thr = metrics.fnir_at_fpir([], [], IMPOSTORS, 0.25)
    assert math.isnan(fnir) and thr == np.nextafter(0.5, np.inf)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([-np.inf, 0.1, 0.2, 0.2, 0.5, 0.8]), min_size=1, max_size=30),
    st.sampled_from([0.0, 1e-3, 0.1, 0.25, 0.5, 1.0]),
)
def test_fnir_at_fpir_threshold_is_the_smallest_within_budget(impostors, target):
    b = np.array(impostors)
    _, thr = metrics.fnir_at_fpir(OWN, OTHER, b, target)
    assert metrics.fpir(b, thr) <= target + 1e-12
    lower = b[np.isfinite(b) & (b < thr)]
    if lower.size:  # the next possible threshold down would break the budget
        assert metrics.fpir(b, lower.max()) > target


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------

A = [0, 0, 10, 10]
B = [20, 0, 30, 10]
C = [40, 0, 50, 10]
NOWHERE = [100, 100, 110, 110]


def image(gt, dets, scores, ignore=None, det_ignore=None) -> ImageDetections:
    gt = np.array(gt, dtype=float).reshape(-1, 4)
    ignore = np.zeros(len(gt), bool) if ignore is None else np.array(ignore)
    return ImageDetections(
        gt, ignore, np.array(dets, float).reshape(-1, 4), np.array(scores, float), det_ignore
    )


def test_iou_known_values_and_shapes():
    assert metrics.iou([A], [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)
    assert metrics.iou([A], [A])[0, 0] == 1.0
    assert metrics.iou([A], [B])[0, 0] == 0.0
    assert metrics.iou(np.zeros((0, 4)), [A, B]).shape == (0, 2)
    assert metrics.iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0  # empty boxes, no NaN


@given(st.lists(st.tuples(*[st.integers(0, 20)] * 4), min_size=1, max_size=5))
def test_iou_is_symmetric_and_bounded(raw):
    boxes = np.array([[min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)] for x1, y1, x2, y2 in raw])
    m = metrics.iou(boxes, boxes)
    np.testing.assert_allclose(m, m.T)
    assert m.min() >= 0 and m.max() <= 1


def test_ap_perfect_detector():
    score = metrics.average_precision([image([A, B], [A, B], [0.9, 0.8])])
    assert score == (1.0, 1.0, 2, 2)


def test_ap_false_positive_ranked_first():
    # Ranked FP, TP, TP: recall 0, 0.5, 1 at precision 0, 1/2, 2/3 -> envelope 2/3 -> AP 2/3.
    score = metrics.average_precision([image([A, B], [NOWHERE, A, B], [0.95, 0.9, 0.8])])
    assert score.ap == pytest.approx(2 / 3)
    assert score.recall == 1.0


def test_ap_false_positive_ranked_between():
    # TP, FP, TP: precision 1 up to recall 0.5, then 2/3 up to recall 1 -> AP 0.5 + 1/3.
    score = metrics.average_precision([image([A, B], [A, NOWHERE, B], [0.9, 0.85, 0.8])])
    assert score.ap == pytest.approx(0.5 + 1 / 3)


def test_ap_tied_scores_do_not_depend_on_input_order():
    # The TP and the FP tie at 0.9: one point (recall 0.5, precision 0.5), then B: AP 2/3.
    first = metrics.average_precision([image([A, B], [A, NOWHERE, B], [0.9, 0.9, 0.8])])
    second = metrics.average_precision([image([A, B], [NOWHERE, A, B], [0.9, 0.9, 0.8])])
    assert first.ap == pytest.approx(2 / 3) and second.ap == pytest.approx(2 / 3)


def test_duplicate_detection_is_a_false_positive():
    img = image([A], [A, [1, 0, 11, 10]], [0.9, 0.8])
    np.testing.assert_array_equal(metrics.match_detections(img), [TP, FP])
    assert metrics.average_precision([img]) == (1.0, 1.0, 1, 2)


def test_detection_moves_on_to_an_unmatched_face():
    # The 0.8 detection overlaps A more than B, but A is already taken: it matches B (COCO rule).
    a, b = [0, 0, 10, 10], [2, 0, 12, 10]
    img = image([a, b], [a, [1, 0, 11, 10]], [0.9, 0.8])
    np.testing.assert_array_equal(metrics.match_detections(img), [TP, TP])


def test_detection_on_an_ignore_region_is_neither_tp_nor_fp():
    img = image([A, C], [C, C, A], [0.95, 0.93, 0.9], ignore=[False, True])
    np.testing.assert_array_equal(metrics.match_detections(img), [IGNORED, IGNORED, TP])
    assert metrics.average_precision([img]) == (1.0, 1.0, 1, 1)
    # The same detection on background costs precision.
    assert metrics.average_precision([image([A], [NOWHERE, A], [0.95, 0.9])]).ap == pytest.approx(0.5)


def test_detection_flagged_out_of_range_is_ignored_only_if_unmatched():
    img = image([A], [NOWHERE, A], [0.95, 0.9], det_ignore=[True, True])
    np.testing.assert_array_equal(metrics.match_detections(img), [IGNORED, TP])


def test_matching_stays_within_an_image():
    # The detection of image 2 sits where image 1's face is, but image 2 has its face elsewhere.
    score = metrics.average_precision([image([A], [A], [0.9]), image([B], [A], [0.8])])
    assert score.recall == 0.5 and score.ap == pytest.approx(0.5)


def test_ap_empty_inputs():
    assert math.isnan(metrics.average_precision([]).ap)
    assert metrics.average_precision([image([A], [], [])]) == (0.0, 0.0, 1, 0)
    nothing_to_find = metrics.average_precision([image([], [A], [0.9])])
    assert math.isnan(nothing_to_find.ap) and nothing_to_find.detections == 1


@settings(max_examples=100, deadline=None)
@given(st.permutations(range(5)), st.lists(st.sampled_from([0.2, 0.5, 0.9]), min_size=5, max_size=5))
def test_ap_is_bounded_and_order_free(order, scores):
    dets = np.array([A, B, NOWHERE, [1, 0, 11, 10], C], float)
    s = np.array(scores)
    base = metrics.average_precision([image([A, B, C], dets, s)])
    shuffled = metrics.average_precision([image([A, B, C], dets[list(order)], s[list(order)])])
    assert 0.0 <= base.ap <= 1.0 and 0.0 <= base.recall <= 1.0
    assert shuffled.ap == pytest.approx(base.ap)
