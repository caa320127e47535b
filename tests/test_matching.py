"""Cosine similarity properties and 1:N best-match scoring."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from appliance.access.matching import (
    NO_SCORE,
    Match,
    best_matches,
    cosine_similarity,
    l2_normalise,
    similarities,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
vectors = arrays(np.float32, 16, elements=finite).filter(lambda v: np.linalg.norm(v) > 1e-3)


def unit(*values: float) -> np.ndarray:
    return l2_normalise(np.array(values, dtype=np.float32))


@given(vectors, vectors)
def test_cosine_is_symmetric_and_bounded(a: np.ndarray, b: np.ndarray) -> None:
    ab = cosine_similarity(a, b)
    assert ab == cosine_similarity(b, a)
    assert -1.0 <= ab <= 1.0


@given(vectors, st.floats(0.01, 100))
def test_cosine_ignores_length_and_is_one_with_itself(a: np.ndarray, k: float) -> None:
    assert cosine_similarity(a, a * np.float32(k)) == pytest.approx(1.0, abs=1e-6)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0, abs=1e-6)


def test_cosine_of_orthogonal_vectors_is_zero() -> None:
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == 0.0


def test_cosine_refuses_zero_and_mismatched_vectors() -> None:
    with pytest.raises(ValueError, match="zero"):
        cosine_similarity(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="differ in length"):
        cosine_similarity(np.ones(3), np.ones(4))


@given(
    arrays(np.float32, (5, 16), elements=finite).filter(lambda m: np.all(np.linalg.norm(m, axis=1) > 1e-3))
)
def test_similarities_agree_with_cosine(rows: np.ndarray) -> None:
    templates = l2_normalise(rows)
    scores = similarities(rows[0] * 7, templates)
    expected = [cosine_similarity(rows[0], r) for r in rows]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_best_user_is_scored_by_their_closest_template() -> None:
    probe = unit(1, 0, 0)
    templates = np.stack([unit(0, 1, 0), unit(1, 0.1, 0), unit(1, 1, 0), unit(0, 0, 1)])
    owners = np.array(["ann", "ann", "bob", "cat"])
    match = best_matches(probe, templates, owners)
    assert match.user == "ann"
    assert match.score == pytest.approx(cosine_similarity(probe, templates[1]), abs=1e-6)
    assert match.second_user == "bob"
    assert match.second_score == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert match.lead == pytest.approx(match.score - match.second_score)


def test_other_templates_of_the_best_user_are_not_rivals() -> None:
    # Ann's two near-identical templates must not make her "ambiguous" against herself.
    templates = np.stack([unit(1, 0), unit(1, 0.01), unit(0, 1)])
    match = best_matches(unit(1, 0), templates, np.array([7, 7, 9]))
    assert (match.user, match.second_user) == (7, 9)
    assert match.second_score == pytest.approx(0.0, abs=1e-6)
    assert isinstance(match.user, int)


def test_single_user_has_no_rival() -> None:
    match = best_matches(unit(1, 0), np.stack([unit(1, 1), unit(0, 1)]), np.array(["ann", "ann"]))
    assert match == Match("ann", pytest.approx(np.sqrt(0.5)), NO_SCORE, None)


def test_empty_gallery_gives_no_user() -> None:
    match = best_matches(unit(1, 0), np.zeros((0, 2), np.float32), np.array([], dtype=str))
    assert match.user is None
    assert match.score == NO_SCORE


def test_probe_need_not_be_normalised() -> None:
    templates = np.stack([unit(1, 0), unit(0, 1)])
    assert best_matches(np.array([5.0, 0.0]), templates, np.array(["a", "b"])).score == pytest.approx(1.0)


def test_shape_mismatches_are_refused() -> None:
    templates = np.stack([unit(1, 0), unit(0, 1)])
    with pytest.raises(ValueError, match="owners"):
        best_matches(unit(1, 0), templates, np.array(["a"]))
    with pytest.raises(ValueError, match="templates must be"):
        best_matches(unit(1, 0, 0), templates, np.array(["a", "b"]))


def test_100k_templates_match_in_milliseconds() -> None:
    rng = np.random.default_rng(1)
    templates = l2_normalise(rng.standard_normal((100_000, 128)).astype(np.float32))
    owners = np.arange(100_000) // 5
    probe = templates[12_345] + 0.01 * rng.standard_normal(128).astype(np.float32)
    best_matches(probe, templates, owners)
    start = time.perf_counter()
    match = best_matches(probe, templates, owners)
    elapsed = time.perf_counter() - start
    assert match.user == 12_345 // 5
    # A few ms on a desktop; the bound is loose because CI machines are shared.
    assert elapsed < 0.1
