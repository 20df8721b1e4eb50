"""k-NN outlier detector: planted outliers, flag rules, tiny inputs, a real tabular dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.issues.outliers import find_outliers, knn_mean_distance
from dq_pipeline_tests.conftest import DATA


def _cloud_with_planted(n: int = 200, d: int = 8, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    planted = [17, 123]
    X[17] = 12.0  # far from the unit cloud in every coordinate
    X[123] = -15.0
    return X, planted


def test_planted_outliers_score_lowest_and_only_they_are_flagged() -> None:
    X, planted = _cloud_with_planted()
    r = find_outliers(X, metric="euclidean")
    assert set(np.argsort(r.scores)[:2]) == set(planted)
    assert np.flatnonzero(r.flags).tolist() == planted  # calibrated: no false alarms on a Gaussian
    assert r.summary["n_outliers"] == 2
    assert r.summary["n_neighbors"] == 10 and r.summary["metric"] == "euclidean"
    assert r.summary["method"].startswith("calibrated")
    # the former Tukey fence is still available and agrees on this easy cloud
    old = find_outliers(X, metric="euclidean", method="iqr")
    assert old.summary["method"].startswith("iqr") and np.flatnonzero(old.flags).tolist() == planted
    np.testing.assert_array_equal(old.scores, r.scores)  # same score, only the flag rule differs
    # score/threshold consistency: flagged exactly where score < score_threshold
    assert ((r.scores < r.summary["score_threshold"]) == r.flags).all()
    # a typical example scores about exp(-1)
    assert np.median(r.scores) == pytest.approx(np.exp(-1), abs=0.02)
    assert 0 <= r.scores.min() and r.scores.max() <= 1


def test_cosine_metric_flags_a_direction_outlier() -> None:
    rng = np.random.default_rng(1)
    X = np.abs(rng.normal(size=(150, 32))) + np.r_[np.full(16, 3.0), np.zeros(16)]
    X[60] = np.r_[np.zeros(16), np.full(16, 3.0)]  # orthogonal-ish direction, similar norm
    r = find_outliers(X)  # cosine by default
    assert np.argmin(r.scores) == 60
    assert r.flags[60] and r.summary["n_outliers"] <= 3


def test_contamination_flags_that_fraction() -> None:
    X, planted = _cloud_with_planted()
    r = find_outliers(X, metric="euclidean", contamination=0.05)
    assert r.summary["n_outliers"] == 10  # ceil(0.05 * 200)
    assert set(planted) <= set(np.flatnonzero(r.flags))
    # the flagged ones are exactly the 10 lowest scores
    assert set(np.flatnonzero(r.flags)) == set(np.argsort(r.scores)[:10])
    with pytest.raises(ValueError):
        find_outliers(X, contamination=0.9)


def test_self_is_excluded_from_neighbours() -> None:
    X = np.array([[0.0], [1.0], [3.0]])
    d = knn_mean_distance(X, n_neighbors=1, metric="euclidean")
    assert d.tolist() == [1.0, 1.0, 2.0]  # not 0 (the point itself)


def test_tiny_datasets_do_not_crash() -> None:
    X = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0], [50.0, 50.0]])
    r = find_outliers(X, metric="euclidean", n_neighbors=10)  # k reduced to N - 1 = 3
    assert r.summary["n_neighbors"] == 3
    assert np.argmin(r.scores) == 3
    one = find_outliers(np.ones((1, 3)))
    assert one.flags.tolist() == [False] and one.summary["n_outliers"] == 0
    assert one.scores.tolist() == [1.0]
    none = find_outliers(np.zeros((0, 3)))
    assert none.scores.shape == (0,) and none.summary["n_outliers"] == 0


def test_all_identical_rows_are_not_outliers() -> None:
    r = find_outliers(np.ones((20, 4)), metric="euclidean")
    assert not r.flags.any()
    assert np.allclose(r.scores, 1.0)


def test_real_tabular_data_flags_a_small_fraction() -> None:
    from sklearn.preprocessing import StandardScaler

    df = pd.read_csv(DATA / "mulan_emotions" / "emotions.csv", keep_default_na=False)
    X = StandardScaler().fit_transform(df.drop(columns="labels").select_dtypes("number"))
    r = find_outliers(X, metric="euclidean")
    assert 0 < r.summary["n_outliers"] <= 0.05 * len(X)
    # flagged examples really are farther from their neighbours than the rest
    d = knn_mean_distance(X, metric="euclidean")
    assert d[r.flags].min() > d[~r.flags].max()


def test_progress_searches_in_blocks_with_the_same_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a progress callback the neighbour search runs in blocks (reported as rows done / total) and gives
    the same distances, exact duplicates (more than k + 1 identical rows) included."""
    import dq_pipeline.neighbours as neighbours

    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(230, 8)), np.repeat(rng.normal(size=(1, 8)), 14, axis=0)])
    monkeypatch.setattr(neighbours, "BLOCK", 50)
    calls: list[tuple[int, int]] = []
    for metric in ("euclidean", "cosine"):
        calls.clear()
        blocked = knn_mean_distance(X, n_neighbors=10, metric=metric, progress=lambda d, t: calls.append((d, t)))
        np.testing.assert_allclose(blocked, knn_mean_distance(X, n_neighbors=10, metric=metric), rtol=0, atol=1e-12)
        assert calls == [(50, 244), (100, 244), (150, 244), (200, 244), (244, 244)]
    result = find_outliers(X, progress=lambda d, t: None)
    np.testing.assert_array_equal(result.flags, find_outliers(X).flags)


def test_extra_statistic_flags_what_the_distance_misses_and_leaves_the_rest_alone() -> None:
    """A second statistic (texts: pieces per word) flags an example whose distance is ordinary, through one
    effective distance: scores of examples the statistic does not dominate are unchanged, flags stay the top of
    the ranking, and the summary counts what came from the statistic."""
    from dq_pipeline.issues.outliers import effective_distance, robust_log_null

    X, planted = _cloud_with_planted()
    rng = np.random.default_rng(3)
    extra = np.exp(rng.normal(0.3, 0.2, len(X)))  # log-normal, like pieces per word of prose
    extra[40] = 60.0  # unreadable, yet in the middle of the cloud
    base = find_outliers(X, metric="euclidean")
    r = find_outliers(X, metric="euclidean", extra=extra, extra_name="pieces_per_word")
    assert not base.flags[40] and r.flags[40]
    assert np.flatnonzero(r.flags).tolist() == sorted([*planted, 40])
    assert r.summary["n_outliers_by_extra"] == 1 and r.summary["extra_statistic"] == "pieces_per_word"
    assert r.summary["extra_z_threshold"] == 5.0 and r.summary["z_threshold"] == 3.5  # the euclidean default
    assert set(np.argsort(r.scores)[:3]) == {*planted, 40}
    assert r.details["example_index"].tolist() == sorted([*planted, 40])  # one row per flagged example
    assert dict(zip(r.details["example_index"], r.details["flagged_by"])) == {
        planted[0]: "knn_distance", planted[1]: "knn_distance", 40: "pieces_per_word"}
    assert r.details.loc[r.details["example_index"] == 40, "pieces_per_word"].item() == 60.0
    assert base.details["extra"].isna().all() and len(base.details) == 2
    assert ((r.scores < r.summary["score_threshold"]) == r.flags).all()
    d = knn_mean_distance(X, metric="euclidean")
    e, taken = effective_distance(d, extra, 3.5, 5.0)
    assert np.flatnonzero(taken).tolist() == [40]  # only where the statistic alone would flag
    np.testing.assert_array_equal(e[~taken], d[~taken])
    np.testing.assert_array_equal(r.scores[~taken], base.scores[~taken])
    assert (e[taken] > d[taken]).all()
    # where taken, the effective distance's z on the distance's null is the statistic's z minus the shift
    z_d, center, scale = robust_log_null(d)
    z_e = robust_log_null(extra)[0]
    np.testing.assert_allclose((np.log(e[taken]) - center) / scale, z_e[taken] - 1.5, rtol=1e-6)
    # a statistic that is not one finite value >= 0 per example is refused
    for bad in (extra[:-1], np.r_[extra[:-1], np.nan], -extra):
        with pytest.raises(ValueError, match="extra must be"):
            find_outliers(X, metric="euclidean", extra=bad)


def test_per_metric_default_thresholds_and_an_explicit_one() -> None:
    from dq_pipeline.issues.outliers import DEFAULT_Z_THRESHOLDS

    X, _ = _cloud_with_planted()
    assert find_outliers(X).summary["z_threshold"] == DEFAULT_Z_THRESHOLDS["cosine"]
    assert find_outliers(X, metric="euclidean").summary["z_threshold"] == DEFAULT_Z_THRESHOLDS["euclidean"]
    loose = find_outliers(X, metric="euclidean", z_threshold=1.0)
    assert loose.summary["z_threshold"] == 1.0 and loose.summary["n_outliers"] > 2
