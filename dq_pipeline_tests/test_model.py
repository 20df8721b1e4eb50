import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dq_pipeline.model import DEFAULT_MODEL, make_model, multilabel_folds, out_of_fold_probabilities, per_tag_auroc


def test_folds_partition_and_stratify(emotions_xy):
    _, Y = emotions_xy
    folds = multilabel_folds(Y, n_folds=5, seed=3)
    assert set(np.unique(folds)) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 0.02 * len(Y)  # iterative stratification: near-equal folds
    # every tag's positives spread evenly: each fold holds 20% +- 2 examples of each tag
    for k in range(Y.shape[1]):
        per_fold = np.bincount(folds[Y[:, k] == 1], minlength=5)
        assert per_fold.max() - per_fold.min() <= 3
    assert np.array_equal(folds, multilabel_folds(Y, n_folds=5, seed=3))  # seeded


def test_fewer_examples_than_folds():
    with pytest.raises(ValueError, match="fewer than the 5 folds"):
        multilabel_folds(np.eye(3, dtype=int), 5)


def test_out_of_fold_predictions_come_from_models_that_never_saw_the_example(emotions_xy):
    X, Y = emotions_xy
    oof = out_of_fold_probabilities(X, Y, n_folds=4, seed=1)
    assert oof.probabilities.shape == Y.shape
    assert np.all((oof.probabilities >= 0) & (oof.probabilities <= 1))
    # refit fold 2 by hand on the other folds: identical predictions for the held-out rows
    test = oof.folds == 2
    est = make_model(DEFAULT_MODEL, seed=1).fit(X[~test], Y[~test])
    assert np.allclose(est.predict_proba(X[test]), oof.probabilities[test])
    # in-sample predictions are clearly more confident than out-of-fold ones (no leakage)
    in_sample = make_model(DEFAULT_MODEL, seed=1).fit(X, Y).predict_proba(X)
    assert roc_auc_score(Y.ravel(), in_sample.ravel()) > roc_auc_score(Y.ravel(), oof.probabilities.ravel())
    assert np.allclose(oof.auroc, per_tag_auroc(Y, oof.probabilities))
    assert np.nanmean(oof.auroc) > 0.75  # real signal on MULAN emotions


def test_constant_and_single_positive_tags(emotions_xy):
    X, Y = emotions_xy
    Y = np.column_stack([Y[:, :2], np.zeros(len(Y), int), np.eye(len(Y), 1, dtype=int)[:, 0]])
    oof = out_of_fold_probabilities(X[:, :10], Y, n_folds=3)
    assert np.all(oof.probabilities[:, 2] == 0)
    assert np.isnan(oof.auroc[2]) and np.isfinite(oof.probabilities).all()


def test_per_tag_auroc_equals_sklearn_with_ties_and_single_class_tags():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    Y = (rng.random((500, 4)) < [0.3, 0.02, 0.0, 0.5]).astype(int)
    P = np.round(rng.random((500, 4)) * 0.5 + 0.4 * Y, 1)  # coarse scores: many ties
    got = per_tag_auroc(Y, P)
    for k in (0, 1, 3):
        assert abs(got[k] - roc_auc_score(Y[:, k], P[:, k])) < 1e-12
    assert np.isnan(got[2])  # a tag nobody carries has no AUROC
