"""Ambiguity detector: borderline probabilities, per-tag thresholds, co-occurring pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dq_pipeline.issues.ambiguous import (
    DEFAULT_MARGIN,
    find_ambiguous,
    normalised_distance,
    tag_thresholds,
)


def test_normalised_distance_maps_threshold_to_zero_and_ends_to_plus_minus_one() -> None:
    z = normalised_distance(np.array([[0.0, 0.1, 0.2, 0.6, 1.0]]), np.full(5, 0.2))
    assert z[0].tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])


def test_midpoint_thresholds_hand_computed() -> None:
    Y = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    P = np.array([[0.4, 0.9], [0.2, 0.9], [0.1, 0.9], [0.1, 0.9]])
    t = tag_thresholds(P, Y, "midpoint")
    assert t[0] == pytest.approx((0.3 + 0.1) / 2)  # mean over positives / negatives
    assert t[1] == 0.5  # no negatives -> fallback 0.5
    assert tag_thresholds(P, Y, 0.3).tolist() == [0.3, 0.3]
    with pytest.raises(ValueError):
        tag_thresholds(P, Y, "median")


def test_borderline_flagged_confident_not_whatever_the_given_tags() -> None:
    P = np.array(
        [
            [0.95, 0.02],  # 0 confident, agrees with its tags
            [0.52, 0.01],  # 1 borderline on tag 0
            [0.47, 0.00],  # 2 borderline, and its given tag agrees: still ambiguous
            [0.01, 0.99],  # 3 confidently contradicts its tags: a label error, not ambiguous
            [0.30, 0.80],  # 4 clear on both
        ]
    )
    Y = np.array([[1, 0], [0, 0], [0, 0], [1, 0], [0, 1]])
    r = find_ambiguous(P, Y, threshold=0.5)  # margin 0.1: p in [0.45, 0.55] is borderline
    assert r.flags.tolist() == [False, True, True, False, False]
    assert r.details[["example_index", "tag_index"]].values.tolist() == [[1, 0], [2, 0]]
    assert r.details["probability"].tolist() == [0.52, 0.47]
    assert r.details["threshold"].tolist() == [0.5, 0.5]
    assert set(r.details["reason"]) == {"borderline"}
    # low = ambiguous: closer to the threshold scores lower
    assert r.scores[1] < r.scores[2] < r.scores[4] < r.scores[0]
    assert r.scores[1] == pytest.approx(0.04)
    assert (r.flags == (r.scores <= r.summary["margin"])).all()
    s = r.summary
    assert s["n_ambiguous"] == 2 and s["rate"] == pytest.approx(0.4)
    assert s["per_tag_borderline"] == {0: 2, 1: 0}
    assert s["thresholds"] == [0.5, 0.5] and s["margin"] == DEFAULT_MARGIN
    json.dumps(s)  # JSON-serialisable for the audit config / DuckDB


def test_midpoint_threshold_catches_rare_tag_borderline_that_0_5_misses() -> None:
    # a rare tag whose positives get ~0.3 and negatives ~0.1: threshold 0.2
    Y = np.zeros((10, 1), dtype=int)
    Y[:2, 0] = 1
    P = np.full((10, 1), 0.1)
    P[:2, 0] = 0.3
    P[5, 0] = 0.21  # borderline for this tag, "confidently negative" against 0.5
    P[6, 0] = 0.02
    mid = find_ambiguous(P, Y, threshold="midpoint")
    assert mid.summary["thresholds"][0] == pytest.approx((0.3 + (0.1 * 6 + 0.21 + 0.02) / 8) / 2)
    assert mid.flags[5] and not mid.flags[6]
    assert not find_ambiguous(P, Y).flags[5]  # the default threshold 0.5 calls it confidently negative


def test_co_occurring_pair_with_equal_lukewarm_support() -> None:
    # tags 0 and 1 co-occur in 6 examples; tag 2 never co-occurs with them
    Y = np.zeros((12, 3), dtype=int)
    Y[:6, [0, 1]] = 1
    Y[6:9, 2] = 1
    P = np.where(Y == 1, 0.95, 0.05).astype(float)
    # example 10: tags 0 and 1 both at p = 0.575 (z = 0.15 with t = 0.5): neither borderline
    # on its own (margin 0.1) but equal, lukewarm support for a co-occurring pair
    P[10] = [0.575, 0.575, 0.05]
    # example 11: the same pattern on tags 0 and 2, which never co-occur -> not ambiguous
    P[11] = [0.575, 0.05, 0.575]
    r = find_ambiguous(P, Y, threshold=0.5)
    assert np.flatnonzero(r.flags).tolist() == [10]
    rows = r.details[r.details["example_index"] == 10]
    assert rows["tag_index"].tolist() == [0, 1]
    assert set(rows["reason"]) == {"co-occurring pair"}
    assert r.summary["n_pair"] == 1 and r.summary["n_borderline"] == 0
    assert r.scores[10] <= r.summary["margin"] < r.scores[11]
    # the rule needs enough co-occurrence
    assert not find_ambiguous(P, Y, threshold=0.5, min_cooccurrence=7).flags.any()
    # and genuinely different support is not a tie
    P[10] = [0.575, 0.59, 0.05]  # z = 0.15 vs 0.18: gap 0.03 <= 0.05 still a tie
    assert find_ambiguous(P, Y, threshold=0.5).flags[10]
    P[10] = [0.575, 0.65, 0.05]  # z = 0.15 vs 0.30: outside the pair band
    assert not find_ambiguous(P, Y, threshold=0.5).flags[10]


def test_scores_in_unit_interval_and_shapes_checked() -> None:
    rng = np.random.default_rng(0)
    P = rng.uniform(size=(300, 5))
    Y = (rng.uniform(size=(300, 5)) < 0.3).astype(int)
    r = find_ambiguous(P, Y)
    assert r.scores.shape == (300,) and 0 <= r.scores.min() and r.scores.max() <= 1
    assert (r.flags == (r.scores <= DEFAULT_MARGIN)).all()
    assert r.summary["n_ambiguous"] == r.details["example_index"].nunique()
    # a wider margin flags a superset
    wide = find_ambiguous(P, Y, margin=0.2, pair_band=0.4)
    assert set(np.flatnonzero(r.flags)) <= set(np.flatnonzero(wide.flags))
    with pytest.raises(ValueError):
        find_ambiguous(P, Y[:, :4])
    with pytest.raises(ValueError):
        find_ambiguous(P, Y, margin=0.3, pair_band=0.2)


def _pairs_over_all_rows(P: np.ndarray, Y: np.ndarray, margin: float = 0.1, pair_band: float = 0.2,
                         pair_gap: float = 0.05, min_cooccurrence: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The co-occurring pair rule as first written (every pair over all N rows): (scores, pair cells)."""
    from dq_pipeline.issues.ambiguous import normalised_distance, tag_thresholds

    z = normalised_distance(P, tag_thresholds(P, Y, 0.5))
    az = np.abs(z)
    scores = az.min(axis=1)
    pair_flag = np.zeros(P.shape, dtype=bool)
    co = Y.T.astype(np.int64) @ Y.astype(np.int64)
    for j, k in zip(*np.nonzero(np.triu(co >= min_cooccurrence, k=1))):
        pair_score = np.maximum(np.abs(z[:, j] - z[:, k]), np.maximum(az[:, j], az[:, k]) * margin / pair_band)
        hit = (np.abs(z[:, j] - z[:, k]) <= pair_gap) & (np.maximum(az[:, j], az[:, k]) <= pair_band)
        pair_flag[hit, j] = pair_flag[hit, k] = True
        scores = np.where(hit, np.minimum(scores, np.minimum(pair_score, margin)), scores)
    return scores, pair_flag


def test_pair_search_among_band_rows_equals_the_all_rows_loop() -> None:
    """Issue 11: pairs are searched only among rows inside the band (near-linear at 1M rows); the result is the
    all-rows loop's, on lukewarm correlated probabilities where many pairs hit."""
    rng = np.random.default_rng(3)
    n, k = 4000, 12
    shared = rng.random((n, 1))
    P = np.clip(0.5 + 0.25 * (shared - 0.5) + 0.12 * rng.standard_normal((n, k)), 0.0, 1.0)
    Y = rng.random((n, k)) < P
    result = find_ambiguous(P, Y)
    scores, pair_cells = _pairs_over_all_rows(P, Y.astype(bool))
    assert pair_cells.sum() > 500  # the pair rule is really exercised
    np.testing.assert_array_equal(result.scores, np.clip(scores, 0.0, 1.0))
    pair_rows = result.details[result.details["reason"] == "co-occurring pair"]
    expected = pair_cells & ~(np.abs(np.abs(P - 0.5) / 0.5) <= 0.1)  # pair cells not already borderline
    assert set(zip(pair_rows["example_index"], pair_rows["tag_index"])) == set(zip(*np.nonzero(expected)))
