"""JointLogisticRegression ('fast_logreg' and variants) on MULAN emotions (593 real rows, 72 features)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dq_pipeline.fast_model import JointLogisticRegression
from dq_pipeline.model import DEFAULT_C, FAST_MODELS, make_model, out_of_fold_probabilities, per_tag_auroc


def test_probabilities_are_per_tag_and_in_unit_interval(emotions_xy):
    X, Y = emotions_xy
    est = make_model("fast_logreg").fit(X[:400], Y[:400])
    P = est.predict_proba(X[400:])
    assert P.shape == (len(X) - 400, Y.shape[1])
    assert np.all((P >= 0) & (P <= 1)) and np.isfinite(P).all()
    # fitted on 400 rows, it still ranks the 193 unseen ones far better than chance
    assert np.nanmean(per_tag_auroc(Y[400:], P)) > 0.75


def test_out_of_fold_quality_matches_logreg(emotions_xy):
    X, Y = emotions_xy
    slow = out_of_fold_probabilities(X, Y, model="logreg")
    fast = out_of_fold_probabilities(X, Y, model="fast_logreg")
    assert np.array_equal(slow.folds, fast.folds)
    assert abs(np.nanmean(fast.auroc) - np.nanmean(slow.auroc)) < 0.02
    assert np.abs(fast.auroc - slow.auroc).max() < 0.01
    assert np.abs(fast.probabilities - slow.probabilities).mean() < 0.005


@pytest.mark.parametrize("name", ["fast_logreg", "fast_logreg_f64", "joint_logreg", "joint_logreg_precond"])
def test_same_optimum_as_sklearn_logistic_regression(emotions_xy, name):
    """Same objective as StandardScaler + LogisticRegression(C=DEFAULT_C): at a tight tolerance both land on
    the same weights, also with a constant column and a column of tiny but real variance."""
    X, Y = emotions_xy
    rng = np.random.default_rng(0)
    X = np.column_stack([X[:, :20], np.full(len(X), 3.7), 1e-30 * rng.standard_normal(len(X))])
    Y = Y[:, :3]
    Xs = StandardScaler().fit(X)
    est = JointLogisticRegression(**{**FAST_MODELS[name], "tol": 1e-7}).fit(X, Y)
    assert est.converged_.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(Y.shape[1]):
            ref = LogisticRegression(C=DEFAULT_C, tol=1e-12, max_iter=100_000).fit(Xs.transform(X), Y[:, k])
            w = est.coef_[:, k] * Xs.scale_  # weights on standardised features
            assert np.abs(w - ref.coef_[0]).max() < 1e-4 * np.abs(ref.coef_[0]).max()
            p_ref = ref.predict_proba(Xs.transform(X))[:, 1]
            assert np.abs(est.predict_proba(X)[:, k] - p_ref).max() < 1e-5


def test_constant_tag_and_single_varying_tag_through_the_cv_loop(emotions_xy):
    X, Y = emotions_xy
    # one constant tag and one varying tag: the loop predicts the constant itself and fits the other
    # alone, as a 1-d y (predict_proba then gives sklearn's (N, 2) binary layout)
    Y2 = np.column_stack([np.zeros(len(Y), int), Y[:, 0]])
    fast = out_of_fold_probabilities(X, Y2, model="fast_logreg")
    slow = out_of_fold_probabilities(X, Y2, model="logreg")
    assert np.all(fast.probabilities[:, 0] == 0) and np.isnan(fast.auroc[0])
    assert abs(fast.auroc[1] - slow.auroc[1]) < 0.01
    assert np.abs(fast.probabilities[:, 1] - slow.probabilities[:, 1]).mean() < 0.005

    est = make_model("fast_logreg").fit(X, Y[:, 0])
    P = est.predict_proba(X)
    assert P.shape == (len(X), 2) and np.allclose(P.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="positive and negative"):
        make_model("fast_logreg").fit(X, np.zeros(len(X), int))


def test_deterministic(emotions_xy):
    X, Y = emotions_xy
    a = out_of_fold_probabilities(X, Y, model="fast_logreg", seed=3).probabilities
    b = out_of_fold_probabilities(X, Y, model="fast_logreg", seed=3).probabilities
    assert np.array_equal(a, b)


def test_float32_products_agree_with_float64(emotions_xy):
    X, Y = emotions_xy
    p32 = JointLogisticRegression(dtype="float32").fit(X, Y).predict_proba(X)
    p64 = JointLogisticRegression(dtype="float64").fit(X, Y).predict_proba(X)
    assert np.abs(p32 - p64).max() < 1e-3


def test_principal_directions_restrict_the_weights(emotions_xy):
    X, Y = emotions_xy
    est = JointLogisticRegression(n_components=10).fit(X, Y)
    Xs = StandardScaler().fit_transform(X)
    _, vecs = np.linalg.eigh(Xs.T @ Xs)
    w = est.coef_ * X.std(axis=0)[:, None]  # weights on standardised features (no constant columns)
    # no weight outside the top-10 principal directions
    assert np.abs(vecs[:, :-10].T @ w).max() < 1e-8 * np.abs(w).max()
    assert np.abs(vecs[:, -10:].T @ w).max() > 0.1
