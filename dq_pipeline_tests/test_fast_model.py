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


def test_a_C_per_tag_fits_each_tag_as_alone_at_its_C(emotions_xy):
    """C as an array (K,): column k is the model fitted at C[k] alone (how the grid fits every value at once)."""
    X, Y = emotions_xy
    Cs = np.array([0.003, 0.1, 1.0])
    joint = JointLogisticRegression(C=Cs, tol=1e-8).fit(X, Y[:, :3])
    assert joint.converged_.all()
    for k, c in enumerate(Cs):
        alone = JointLogisticRegression(C=float(c), tol=1e-8).fit(X, Y[:, k])
        assert np.abs(joint.predict_proba(X)[:, k] - alone.predict_proba(X)[:, 1]).max() < 1e-6
    with pytest.raises(ValueError, match="C has shape"):
        JointLogisticRegression(C=Cs[:2]).fit(X, Y[:, :3])
    with pytest.raises(ValueError, match="positive"):
        JointLogisticRegression(C=np.array([0.1, 0.0, 1.0])).fit(X, Y[:, :3])


def test_C_grid_keeps_the_value_of_lowest_out_of_fold_log_loss(emotions_xy):
    """The cross-validation fits every grid value at once and keeps the best by out-of-fold log-loss; its
    probabilities are those of a plain run at that C (same folds), and each value's loss is that run's loss (to
    the solver's tolerance: a joint fit of more columns rounds its float32 products differently)."""
    X, Y = emotions_xy
    grid = (0.003, 0.03, 1.0)
    chosen = out_of_fold_probabilities(X, Y, C_grid=grid)
    assert set(chosen.C_log_loss) == set(grid) and chosen.C in grid
    assert chosen.C_log_loss[chosen.C] == min(chosen.C_log_loss.values())
    for c in grid:
        alone = out_of_fold_probabilities(X, Y, C_grid=(c,))
        assert alone.C == c and abs(alone.C_log_loss[c] - chosen.C_log_loss[c]) < 1e-5
        if c == chosen.C:
            assert np.array_equal(alone.folds, chosen.folds)
            assert np.abs(alone.probabilities - chosen.probabilities).max() < 1e-3
    # on these 593 rows of 72 features C = 1 over-fits (bench/results/regularization.md: 0.493 vs 0.430 at 0.03)
    assert chosen.C_log_loss[1.0] > chosen.C_log_loss[0.03] and chosen.C != 1.0
    plain = out_of_fold_probabilities(X, Y)
    assert plain.C == DEFAULT_C and plain.C_log_loss == {}
    with pytest.raises(ValueError, match="C_grid needs a fast model"):
        out_of_fold_probabilities(X, Y, model="logreg", C_grid=grid)
    with pytest.raises(ValueError, match="C_grid needs a fast model"):
        out_of_fold_probabilities(X, Y, C_grid=(0.1, -1.0))


def test_C_grid_split_into_several_fits_gives_the_same_result(emotions_xy, monkeypatch):
    """Large data: the grid values are fitted a few at a time (bounded memory), with the same outcome."""
    import dq_pipeline.model as m

    X, Y = emotions_xy
    grid = (0.003, 0.03, 1.0)
    together = out_of_fold_probabilities(X, Y, C_grid=grid)
    monkeypatch.setattr(m, "GRID_FIT_CELLS", 1)  # one value per fit
    apart = out_of_fold_probabilities(X, Y, C_grid=grid)
    assert apart.C == together.C
    assert all(abs(apart.C_log_loss[c] - together.C_log_loss[c]) < 1e-5 for c in grid)
    assert np.abs(apart.probabilities - together.probabilities).max() < 1e-3


def test_C_grid_chosen_on_the_first_folds_of_a_big_dataset(emotions_xy, monkeypatch):
    """Once GRID_CHOOSE_ROWS held-out rows are predicted at every value, the later folds fit only the chosen one."""
    import dq_pipeline.model as m

    X, Y = emotions_xy
    grid = (0.003, 0.03, 1.0)
    everywhere = out_of_fold_probabilities(X, Y, C_grid=grid)
    assert all(f["C_tried"] == list(grid) for f in everywhere.fit_info)  # 593 rows: the grid in every fold
    monkeypatch.setattr(m, "GRID_CHOOSE_ROWS", 100)  # one fold's ~119 held-out rows are enough
    early = out_of_fold_probabilities(X, Y, C_grid=grid)
    assert early.fit_info[0]["C_tried"] == list(grid)
    assert all(f["C_tried"] == [early.C] for f in early.fit_info[1:])
    fold0 = early.folds == 0
    ref = min(grid, key=lambda c: m._mean_log_loss(Y[fold0], out_of_fold_probabilities(
        X, Y, C_grid=(c,)).probabilities[fold0]))
    assert early.C == ref and early.C != 1.0
    plain = out_of_fold_probabilities(X, Y, C_grid=(early.C,))  # the chosen value's probabilities, every fold
    assert np.abs(plain.probabilities - early.probabilities).max() < 1e-3
