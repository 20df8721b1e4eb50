"""Noise models and metrics of the label-error quality benchmark (bench/noise.py, bench/metrics.py),
and the label-issue options it measures (dq_pipeline.issues.label_issues)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import metrics as bm
from bench import noise as bn
from dq_pipeline.issues import label_issues as li


@pytest.fixture
def emotions(emotions_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(X standardised (593, 72), Y (593, 6) uint8) from the real MULAN emotions data."""
    tags = sorted({t for s in emotions_frame["labels"] for t in s.split("|") if t})
    Y = np.array([[t in s.split("|") for t in tags] for s in emotions_frame["labels"]], dtype=np.uint8)
    X = emotions_frame.drop(columns="labels").to_numpy(dtype=np.float64)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, Y


# ------------------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("kind", bn.NOISE_MODELS)
def test_changed_mask_is_exactly_what_changed_and_seeded(emotions, kind):
    X, Y = emotions
    Yn, changed = bn.inject_noise(kind, Y, 0.2, seed=3, X=X)
    assert Yn.shape == Y.shape and Yn.dtype == np.uint8
    np.testing.assert_array_equal(changed, Yn != Y)
    assert changed.any()
    again, _ = bn.inject_noise(kind, Y, 0.2, seed=3, X=X)
    other, _ = bn.inject_noise(kind, Y, 0.2, seed=4, X=X)
    np.testing.assert_array_equal(again, Yn)
    assert not np.array_equal(other, Yn)


def test_flip_rates_hit_the_target_and_keep_prevalence(emotions):
    _, Y = emotions
    r1, r0 = bn.flip_rates(Y, 0.1)
    Yb = Y.astype(bool)
    expected = np.mean(1 - np.prod(np.where(Yb, 1 - r1, 1 - r0), axis=1))
    assert expected == pytest.approx(0.1, abs=1e-6)
    n1 = Yb.sum(axis=0)
    np.testing.assert_allclose(r1 * n1, r0 * (len(Y) - n1))  # expected removals == expected additions


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_flip_noise_honours_rate_and_flips_both_ways(emotions, rate):
    _, Y = emotions
    fractions = []
    for seed in range(5):
        Yn, changed = bn.flip_noise(Y, rate, seed)
        fractions.append(changed.any(axis=1).mean())
        assert (changed & (Y == 1)).any() and (changed & (Y == 0)).any()
    # mean of 5 x 593 Bernoulli(rate) draws: sd <= 0.008
    assert np.mean(fractions) == pytest.approx(rate, abs=0.03)


def test_missing_noise_drops_exactly_one_tag_from_rate_of_examples(emotions):
    _, Y = emotions
    Yn, changed = bn.missing_noise(Y, 0.1, seed=0)
    assert changed.any(axis=1).sum() == round(0.1 * len(Y))
    assert set(changed.sum(axis=1)) == {0, 1}
    assert (Y[changed] == 1).all() and (Yn[changed] == 0).all()  # only forgotten tags


def test_confusion_noise_swaps_one_tag_for_a_confusable_one(emotions):
    X, Y = emotions
    Yn, changed = bn.confusion_noise(Y, 0.2, seed=1, X=X)
    rows = changed.any(axis=1)
    assert rows.sum() == round(0.2 * len(Y))
    np.testing.assert_array_equal(Yn.sum(axis=1), Y.sum(axis=1))  # cardinality kept
    assert ((changed & (Y == 1)).sum(axis=1)[rows] == 1).all()
    assert ((changed & (Y == 0)).sum(axis=1)[rows] == 1).all()
    # co-occurrence only: the new tag always co-occurs with the replaced one in the clean tags
    Yc, ch = bn.confusion_noise(Y, 0.2, seed=1, X=None, cooc_weight=1.0)
    cooc = Y.T.astype(int) @ Y.astype(int)
    for i in np.flatnonzero(ch.any(axis=1)):
        old = np.flatnonzero(ch[i] & (Y[i] == 1))[0]
        new = np.flatnonzero(ch[i] & (Y[i] == 0))[0]
        assert cooc[old, new] > 0


def test_tag_confusion_is_row_stochastic_without_self(emotions):
    X, Y = emotions
    M = bn.tag_confusion(Y, X)
    np.testing.assert_allclose(M.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.diag(M), 0.0)
    assert (M >= 0).all()


def test_unreachable_rate_is_refused():
    Y = np.array([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=np.uint8)
    with pytest.raises(ValueError, match="eligible"):
        bn.missing_noise(Y, 0.5)
    with pytest.raises(ValueError):
        bn.inject_noise("typo", Y, 0.1)


# ---------------------------------------------------------------------------------------------- metrics


def test_ranking_metrics_on_a_hand_made_case():
    truth = np.array([1, 0, 1, 0], dtype=bool)
    scores = np.array([0.1, 0.2, 0.3, 0.9])  # low = error: ranking T, F, T, F
    assert bm.auprc(truth, scores) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert bm.auroc(truth, scores) == pytest.approx(3 / 4)
    assert bm.precision_at(truth, scores) == pytest.approx(1 / 2)  # T = 2 lowest: T, F
    assert bm.auprc(truth, -scores) < bm.auprc(truth, scores)
    assert np.isnan(bm.auroc(np.zeros(4, bool), scores))


def test_precision_at_resolves_ties_in_expectation():
    truth = np.array([1, 0, 0, 1], dtype=bool)
    scores = np.array([0.1, 0.5, 0.5, 0.5])
    # item 0 is in; one more place among three tied items, one of which is an error
    assert bm.precision_at(truth, scores, 2) == pytest.approx((1 + 1 / 3) / 2)


def test_flag_metrics_on_a_hand_made_case():
    truth = np.array([1, 1, 0, 0, 1], dtype=bool)
    flags = np.array([1, 0, 1, 0, 0], dtype=bool)
    m = bm.flag_metrics(truth, flags)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1 / 2, 1 / 3, 2 * 1 / (2 + 3)))
    none = bm.flag_metrics(truth, np.zeros(5, bool))
    assert np.isnan(none["precision"]) and none["recall"] == 0 and none["f1"] == 0


def test_tag_metrics_split_missing_and_incorrect():
    given = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    changed = np.array([[1, 0], [1, 0], [0, 0]], dtype=bool)  # (0,0) incorrect, (1,0) missing
    flags = np.array([[1, 0], [0, 0], [0, 1]], dtype=bool)  # finds the incorrect one, one false alarm
    scores = np.where(changed, 0.1, 0.9)
    m = bm.tag_metrics(given, changed, scores, flags)
    assert m["tag_auprc"] == pytest.approx(1.0)
    assert (m["incorrect_precision"], m["incorrect_recall"]) == pytest.approx((1 / 2, 1.0))
    assert m["missing_recall"] == 0 and np.isnan(m["missing_precision"])
    assert m["tag_f1"] == pytest.approx(2 * 1 / (2 + 2))


# --------------------------------------------------------------------------- label-issue options measured


def test_confident_learning_defaults_score_the_worst_tag(emotions):
    _, Y = emotions
    P = np.clip(Y * 0.6 + np.random.default_rng(0).random(Y.shape) * 0.4, 0, 1)
    a = li.find_label_issues(Y, P, method="confident_learning")
    b = li.find_label_issues(Y, P, method="confident_learning", pooling="min", scoring="self_confidence", evidence="model")
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.flags, b.flags)
    np.testing.assert_array_equal(a.scores, li.self_confidence(Y, P).min(axis=1))


def test_cleanlab_method_is_the_parity_mode(emotions):
    from dq_pipeline.issues import cleanlab_parity as cp

    _, Y = emotions
    P = np.clip(Y * 0.5 + np.random.default_rng(3).random(Y.shape) * 0.5, 0, 1)
    result = li.find_label_issues(Y, P, method="cleanlab")
    np.testing.assert_array_equal(result.scores, cp.label_quality_scores(Y, P))
    np.testing.assert_array_equal(result.flags, cp.find_label_issues(Y, P))


def test_stacked_probability_never_sees_its_own_tag(emotions):
    _, Y = emotions
    P = np.clip(Y * 0.5 + np.random.default_rng(1).random(Y.shape) * 0.5, 0, 1)
    base = li.stacked_probabilities(Y, P, seed=0)
    flipped = Y.copy()
    flipped[7, 2] ^= 1
    again = li.stacked_probabilities(flipped, P, seed=0)
    assert again[7, 2] == pytest.approx(base[7, 2])  # row 7's own tag 2 never enters its prediction
    assert not np.allclose(again[7], base[7])  # but it is evidence for row 7's other tags


def test_cooccurrence_evidence_finds_planted_errors_better_than_parity(emotions):
    """The reason the option exists: on real data with flips, the stacked scores rank errors higher."""
    from dq_pipeline.issues.cleanlab_parity import label_quality_scores
    from dq_pipeline.model import out_of_fold_probabilities

    X, Y = emotions
    Yn, changed = bn.flip_noise(Y, 0.1, seed=0)
    P = out_of_fold_probabilities(X, Yn, n_folds=3).probabilities
    ours = li.find_label_issues(Yn, P, method="prune_by_noise_rate", pooling="product", evidence="cooccurrence")
    errors = changed.any(axis=1)
    assert bm.auprc(errors, ours.scores) > bm.auprc(errors, label_quality_scores(Yn, P)) + 0.05


def test_ensemble_method_equals_its_two_evidence_sources_combined(emotions):
    """The benchmark builds 'ensemble' from cached evidence; it must equal the registered method."""
    X, Y = emotions
    P = np.clip(Y * 0.5 + np.random.default_rng(2).random(Y.shape) * 0.5, 0, 1)
    direct = li.find_label_issues(Y, P, method="ensemble", features=X, seed=1)
    parts = li.combine_evidence(
        Y,
        li.evidence_probabilities(Y, P, "cooccurrence_knn", features=X, seed=1),
        li.evidence_probabilities(Y, P, "knn", features=X, seed=1),
    )
    np.testing.assert_array_equal(direct.scores, parts.scores)
    np.testing.assert_array_equal(direct.flags, parts.flags)
    assert ((direct.scores >= 0) & (direct.scores <= 1)).all()
    with pytest.raises(ValueError, match="features"):
        li.find_label_issues(Y, P, method="ensemble")
