"""Hostile inputs to cross-validation, the fast model and tabular featurisation, on the bundled real data.

- one tag only (K = 1) and tags constant within a training fold, for every model;
- wide input (400 rows x 50 string columns, 13,524 one-hot features): the fast model must take its
  Gram-matrix path (before, one fold needed an O(D^3) eigendecomposition: 13 minutes and 3.2 GB);
- non-finite and overflowing numeric cells, id-like and high-cardinality categorical columns.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dq_pipeline.embed.tabular import ID_LIKE_MIN_ROWS, featurize_tabular, plan_tabular_columns
from dq_pipeline.fast_model import JointLogisticRegression
from dq_pipeline.model import (
    FAST_MODELS,
    MODELS,
    make_model,
    multilabel_folds,
    out_of_fold_probabilities,
    per_tag_auroc,
)
from dq_pipeline_tests.conftest import DATA

FLAGS_CSV = DATA / "mulan_flags" / "flags.csv"


@pytest.fixture
def flags_frame() -> pd.DataFrame:
    """MULAN flags (194 real rows, 19 feature columns), labels dropped."""
    return pd.read_csv(FLAGS_CSV, keep_default_na=False).drop(columns="labels")


def _tags(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    classes = sorted({t for s in frame["labels"] for t in s.split("|") if t})
    return np.array([[c in s.split("|") for c in classes] for s in frame["labels"]], dtype=np.int64), classes


# ---- 1. one tag (K = 1) and constant tags ---------------------------------------------------------

def test_single_tag_folds_are_stratified_on_that_tag(emotions_xy):
    _, Y = emotions_xy
    y = Y[:, [3]]  # one real tag, (N, 1)
    folds = multilabel_folds(y, n_folds=5, seed=2)
    assert set(np.unique(folds)) == set(range(5))
    per_fold = np.bincount(folds[y[:, 0] == 1], minlength=5)
    assert per_fold.max() - per_fold.min() <= 1  # stratified: positives spread evenly
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    assert np.array_equal(folds, multilabel_folds(y[:, 0], n_folds=5, seed=2))  # (N,) is the same tag


@pytest.mark.parametrize("model", MODELS)
def test_single_tag_out_of_fold_for_every_model(emotions_xy, model):
    X, Y = emotions_xy
    y = Y[:, [3]]
    oof = out_of_fold_probabilities(X, y, model=model, seed=1)
    assert oof.probabilities.shape == (len(X), 1)
    assert np.isfinite(oof.probabilities).all()
    assert np.all((oof.probabilities >= 0) & (oof.probabilities <= 1))
    assert oof.auroc.shape == (1,) and oof.auroc[0] > 0.75  # real signal (multi-tag fits: about 0.8-0.9)
    # the same as fitting that tag alone on each training fold
    test = oof.folds == 0
    est = make_model(model, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[~test], y[~test, 0])
    np.testing.assert_allclose(est.predict_proba(X[test])[:, 1], oof.probabilities[test, 0], atol=1e-12)
    # a (N,) tag vector gives the same (N, 1) answer
    assert np.array_equal(out_of_fold_probabilities(X, y[:, 0], model=model, seed=1).probabilities,
                          oof.probabilities)


@pytest.mark.parametrize("model", ["logreg", "fast_logreg", "joint_logreg"])
@pytest.mark.parametrize("value", [0, 1])
def test_single_tag_present_in_no_row_or_every_row(emotions_xy, model, value):
    X, _ = emotions_xy
    y = np.full((len(X), 1), value)
    oof = out_of_fold_probabilities(X, y, model=model)
    assert oof.probabilities.shape == (len(X), 1) and np.all(oof.probabilities == value)
    assert np.isnan(oof.auroc[0])
    assert all(info["constant_tags"] == [0] and "basis" not in info for info in oof.fit_info)  # no model fitted


@pytest.mark.parametrize("model", MODELS)
def test_tag_constant_in_one_training_fold(emotions_xy, model):
    """A real tag cut down to its first positive (and its complement: every row but one): the fold
    holding that row out trains on a constant tag and predicts its prevalence; the others fit."""
    X, Y = emotions_xy
    first = np.flatnonzero(Y[:, 0])[0]
    rare = np.zeros(len(Y), dtype=np.int64)
    rare[first] = 1
    for y in (rare[:, None], np.column_stack([rare, 1 - rare, Y[:, 1]])):
        oof = out_of_fold_probabilities(X[:, :20], y, model=model)
        held = oof.folds[first]
        assert oof.fit_info[held]["constant_tags"] == list(range(min(y.shape[1], 2)))
        assert oof.probabilities[first, 0] == 0.0  # prevalence of the all-zero training tag
        if y.shape[1] > 1:
            assert oof.probabilities[first, 1] == 1.0
        assert np.isfinite(oof.probabilities).all() and np.all((oof.probabilities >= 0) & (oof.probabilities <= 1))
        assert all(info["constant_tags"] == [] for info in oof.fit_info if info["fold"] != held)


def test_bad_tags_and_features_are_named(emotions_xy):
    X, Y = emotions_xy
    with pytest.raises(ValueError, match="at least one tag"):
        out_of_fold_probabilities(X, Y[:, :0])
    bad = Y.astype(float)
    bad[4, 2] = 2
    with pytest.raises(ValueError, match=r"0/1: row 4, tag 2 is 2\.0"):
        out_of_fold_probabilities(X, bad)
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="row 4, tag 2 is nan"):
        out_of_fold_probabilities(X, bad)
    Xbad = X.copy()
    Xbad[11, 5] = np.inf
    with pytest.raises(ValueError, match="row 11, column 5 is inf"):
        out_of_fold_probabilities(Xbad, Y)
    with pytest.raises(ValueError, match="593 rows but Y has 592"):
        out_of_fold_probabilities(X, Y[1:])
    with pytest.raises(ValueError, match="unknown model"):
        out_of_fold_probabilities(X, Y, model="nope")


# ---- 2. wide input: the Gram-matrix path ----------------------------------------------------------

@pytest.fixture
def wide_codes(emotions_frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """400 real MULAN emotions rows, 50 of their features as string codes (3 significant digits): 50
    categorical columns with 185-348 distinct values each, and the rows' 6 real tags."""
    rows = emotions_frame.iloc[:400]
    codes = rows.drop(columns="labels").iloc[:, :50].apply(lambda c: c.map(lambda v: f"{v:.3g}"))
    return codes, _tags(rows)[0]


def test_wide_one_hot_input_takes_the_gram_path(wide_codes, caplog):
    """Before: the first fold's fit alone ran 13 minutes (3.2 GB) in a D x D eigendecomposition; now
    each fold works on the N x N Gram matrix. No wall-time assertion: the test just has to finish."""
    codes, Y = wide_codes
    X = featurize_tabular(codes, max_categories=None)  # every code its own column
    assert X.shape == (400, 13_524)
    with caplog.at_level(logging.INFO, logger="dq_pipeline"):
        oof = out_of_fold_probabilities(X, Y, model="fast_logreg")
    assert oof.probabilities.shape == Y.shape and np.isfinite(oof.probabilities).all()
    assert np.all((oof.probabilities >= 0) & (oof.probabilities <= 1))
    assert len(oof.fit_info) == 5
    for info in oof.fit_info:
        assert info["basis"] == "gram" and info["d_in"] == 13_524
        assert info["d_basis"] < info["n_train"]  # at most the rank of the centred training rows
        assert info["basis_seconds"] >= 0 and info["fit_seconds"] >= info["basis_seconds"]
    assert sum("Gram matrix" in r.getMessage() for r in caplog.records) == 5
    assert np.nanmean(oof.auroc) > 0.6  # still real signal in the codes (measured 0.647)


@pytest.mark.parametrize("name", list(FAST_MODELS))
def test_gram_path_is_the_same_model(wide_codes, name):
    """Moderately wide real input (120 rows, 20 coded columns: 1,197 one-hot features), where the
    covariance path is still affordable: same weights from both bases, and sklearn's optimum."""
    codes, Y = wide_codes
    X = featurize_tabular(codes.iloc[:120, :20], max_categories=None)
    Y = Y[:120, :3]
    assert X.shape[1] > 1000
    kw = {**FAST_MODELS[name], "tol": 1e-7}
    gram = JointLogisticRegression(**kw).fit(X, Y)
    cov = JointLogisticRegression(**kw, gram=False).fit(X, Y)
    assert gram.fit_info_["basis"] == ("gram" if kw.get("precondition", True) else "none")
    assert cov.fit_info_["basis"] in ("covariance", "none")
    p_gram, p_cov = gram.predict_proba(X), cov.predict_proba(X)
    if "n_components" in kw:  # rank-limited: both keep the top 256 principal directions, here all of them
        assert gram.fit_info_["d_basis"] <= 119
    tol = 1e-4 if kw.get("dtype") == "float32" else 1e-5  # both stop at gradient <= 1e-7
    assert np.abs(p_gram - p_cov).max() < tol
    if name == "fast_logreg_f64":
        Xs = StandardScaler().fit_transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k in range(Y.shape[1]):
                ref = LogisticRegression(C=kw["C"], tol=1e-10, max_iter=100_000).fit(Xs, Y[:, k])
                assert np.abs(p_gram[:, k] - ref.predict_proba(Xs)[:, 1]).max() < 1e-5


def test_normal_width_keeps_the_covariance_path(emotions_xy):
    """N > D (593 x 72): unchanged path, and forcing the Gram path lands on the same model."""
    X, Y = emotions_xy
    auto = JointLogisticRegression(tol=1e-8).fit(X, Y)
    assert auto.fit_info_["basis"] == "covariance" and auto.fit_info_["d_basis"] == 72
    forced = JointLogisticRegression(tol=1e-8, gram=True).fit(X, Y)
    assert forced.fit_info_["basis"] == "gram"
    assert np.abs(auto.predict_proba(X) - forced.predict_proba(X)).max() < 1e-7
    oof = out_of_fold_probabilities(X, Y)
    assert {info["basis"] for info in oof.fit_info} == {"covariance"}


# ---- 3. tabular featurisation: non-finite, overflowing, high-cardinality ----------------------------

@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity"])
def test_infinite_cell_names_column_row_and_value(tmp_path: Path, cell: str):
    text = FLAGS_CSV.read_text().splitlines()
    row = text[8].split(",")  # data row 7
    row[2] = cell  # area
    text[8] = ",".join(row)
    path = tmp_path / "flags.csv"
    path.write_text("\n".join(text) + "\n")
    frame = pd.read_csv(path, keep_default_na=False).drop(columns="labels")
    assert pd.api.types.is_float_dtype(frame["area"])  # pandas parses it as a float infinity
    with pytest.raises(ValueError, match=r"column 'area', row 7 \(index 7\): value -?inf is not finite"):
        featurize_tabular(frame)


@pytest.mark.parametrize("value", [1e308, -1e308, 1e200, 1e160])
def test_overflowing_cell_names_column_row_and_value(flags_frame: pd.DataFrame, value: float):
    """Before: +-1e308 gave NaN features (crashing CV later); 1e160 gave a 'constant' column of 1e159s."""
    frame = flags_frame.assign(example_id=[f"flag{i}" for i in range(len(flags_frame))],
                               row_number=np.arange(len(flags_frame)) + 2)
    frame.loc[12, "population"] = value
    features = [c for c in flags_frame.columns]
    with pytest.raises(ValueError, match=rf"column 'population', row 12 \(index 12, example_id='flag12', "
                                         rf"row_number=14\): value {re.escape(repr(value))} is too large"):
        featurize_tabular(frame, features)


def test_large_but_safe_scale_gives_the_same_features(flags_frame: pd.DataFrame):
    """Standardising is scale-free: a column in units 1e100 times larger gives the same features."""
    base = featurize_tabular(flags_frame)
    scaled = flags_frame.assign(area=flags_frame["area"] * 1e100, population=flags_frame["population"] * -1e-100)
    out = featurize_tabular(scaled)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 2], base[:, 2], atol=1e-9)
    np.testing.assert_allclose(out[:, 3], -base[:, 3], atol=1e-9)


def test_underflowing_column_is_named(flags_frame: pd.DataFrame):
    """Values 1e-200 apart: the variance underflows and StandardScaler called the column constant."""
    frame = flags_frame.assign(population=flags_frame["population"] * 1e-200)
    with pytest.raises(ValueError, match=r"column 'population', row \d+ \(index \d+\): value .* differ by only"):
        featurize_tabular(frame)


def test_id_like_column_is_dropped_with_a_reason(flags_frame: pd.DataFrame, caplog):
    frame = flags_frame.assign(code=[f"F{i:03d}" for i in range(len(flags_frame))])
    with caplog.at_level(logging.WARNING, logger="dq_pipeline"):
        X = featurize_tabular(frame)
    assert np.array_equal(X, featurize_tabular(flags_frame))  # as if the column were not there
    plan = plan_tabular_columns(frame)
    assert "code" in plan.dropped and "id-like" in plan.dropped["code"]
    assert any("'code' dropped" in r.getMessage() for r in caplog.records)
    # only the id-like column: nothing usable, and the reason says why
    with pytest.raises(ValueError, match="no usable feature column.*id-like"):
        featurize_tabular(frame, ["code"])
    # a frame too small to tell an id from chance keeps it
    small = frame.head(ID_LIKE_MIN_ROWS - 1)
    assert featurize_tabular(small, ["code"]).shape == (ID_LIKE_MIN_ROWS - 1, ID_LIKE_MIN_ROWS - 1)


def test_high_cardinality_column_is_capped(flags_frame: pd.DataFrame, caplog):
    """flags' area as text: 136 distinct values in 194 rows (most seen once) -> at most 50 columns."""
    frame = flags_frame[["area", "zone"]].astype(str)
    assert frame["area"].nunique() == 136
    with caplog.at_level(logging.WARNING, logger="dq_pipeline"):
        X = featurize_tabular(frame)
    assert any("'area' has 136 distinct values" in r.getMessage() for r in caplog.records)
    plan = plan_tabular_columns(frame)
    assert plan.capped == ["area"] and plan.categorical == ["zone"]
    counts = frame["area"].value_counts()
    repeated = int((counts >= 2).sum())
    assert X.shape == (194, min(repeated, 49) + 1 + frame["zone"].nunique())  # + one "infrequent" column
    assert set(np.unique(X)) == {0.0, 1.0} and np.all(X.sum(axis=1) == 2)  # one hot per column
    assert featurize_tabular(frame, max_categories=None).shape == (194, 136 + 4)  # no cap: every value


def test_complex_column_is_refused(flags_frame: pd.DataFrame):
    frame = flags_frame.assign(z=flags_frame["area"] + 1j)
    with pytest.raises(ValueError, match="column 'z' holds complex numbers"):
        featurize_tabular(frame)


def test_featurized_flags_run_through_cv_with_one_tag(flags_frame: pd.DataFrame):
    """End to end on real flags: featurise, then 5-fold CV of a single tag."""
    full = pd.read_csv(FLAGS_CSV, keep_default_na=False)
    Y, classes = _tags(full)
    X = featurize_tabular(flags_frame)
    y = Y[:, [classes.index("red")]]
    oof = out_of_fold_probabilities(X, y)
    assert oof.probabilities.shape == (194, 1) and np.isfinite(oof.probabilities).all()
    assert np.allclose(oof.auroc, per_tag_auroc(y, oof.probabilities))
