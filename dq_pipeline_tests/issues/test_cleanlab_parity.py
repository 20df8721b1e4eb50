"""Differential tests: ``dq_pipeline.issues.cleanlab_parity`` against cleanlab 2.9 (dev dependency).

cleanlab is called with list-of-lists labels (its multi-label format) and ``n_jobs=1`` (its results do
not depend on ``n_jobs``; the default spawns a process pool per tag, which is slow).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from cleanlab.count import calibrate_confident_joint, compute_confident_joint
from cleanlab.multilabel_classification import get_label_quality_scores
from cleanlab.multilabel_classification.filter import (
    find_label_issues as cl_find_label_issues,
)
from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class

from dq_pipeline.issues import cleanlab_parity as cp
from dq_pipeline.issues.base import DetectorResult

# cleanlab warns when a tag has too few examples to prune; those cases are the point here.
pytestmark = pytest.mark.filterwarnings("ignore:May not flag all label issues:UserWarning")


def as_lists(Y: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in Y]


def cleanlab_results(Y: np.ndarray, P: np.ndarray) -> dict[str, np.ndarray]:
    labels = as_lists(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes
        return {
            "scores": get_label_quality_scores(labels, P),
            "per_tag": find_multilabel_issues_per_class(labels, P, n_jobs=1),
            "flags": cl_find_label_issues(labels, P, n_jobs=1),
            "confident_joint": compute_confident_joint(labels, P, multi_label=True),
        }


def assert_parity(Y: np.ndarray, P: np.ndarray) -> dict[str, np.ndarray]:
    ref = cleanlab_results(Y, P)
    np.testing.assert_allclose(cp.label_quality_scores(Y, P), ref["scores"], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(cp.per_tag_issues(Y, P), ref["per_tag"])
    np.testing.assert_array_equal(cp.find_label_issues(Y, P), ref["flags"])
    np.testing.assert_array_equal(cp.confident_joint(Y, P), ref["confident_joint"])
    return ref


def make_case(seed: int, n: int, k: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded noisy multi-label data with imbalanced tags and awkward tags when k >= 5.

    Tag prevalences: Dirichlet(0.5) shares of 0.5-2 tags per example (even seeds) or Beta(0.6, 2.5)
    (odd seeds). 8% of the given entries are flipped; P ~ Beta(4, 1.5) where the tag is truly
    present, Beta(1.5, 4) where absent. Styles: 'smooth' (continuous float64), 'ties' (P rounded to
    one decimal: many tied margins), 'coarse' (P in {0, .25, .5, .75, 1}), 'float32'.
    With k >= 5: tag 0 unused, tag 1 given to one example, tag 2 given to all but one, tag 3 never
    predicted (P = 0).
    """
    rng = np.random.default_rng(seed)
    if seed % 2 == 0:
        prevalence = np.minimum(0.9, rng.dirichlet(np.full(k, 0.5)) * rng.uniform(0.5, 2.0))
    else:
        prevalence = rng.beta(0.6, 2.5, size=k)
    truth = rng.random((n, k)) < prevalence
    Y = truth ^ (rng.random((n, k)) < 0.08)
    P = np.where(truth, rng.beta(4.0, 1.5, (n, k)), rng.beta(1.5, 4.0, (n, k)))
    if style == "ties":
        P = np.round(P, 1)
    elif style == "coarse":
        P = np.round(P * 4) / 4
    elif style == "float32":
        P = P.astype(np.float32)
    if k >= 5:
        Y[:, 0] = False
        Y[:, 1] = False
        Y[rng.integers(n), 1] = True
        Y[:, 2] = True
        Y[rng.integers(n), 2] = False
        P[:, 3] = 0
    return Y, P


STYLES = ["smooth", "ties", "coarse", "float32"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("k", [2, 5, 17])
@pytest.mark.parametrize("n", [20, 57, 300, 2000])
def test_matches_cleanlab_on_random_datasets(n: int, k: int, style: str) -> None:
    seed = 1000 * n + 10 * k + STYLES.index(style)
    Y, P = make_case(seed, n, k, style)
    ref = assert_parity(Y, P)
    if n >= 300:  # the comparison is not vacuous: cleanlab does flag things here
        assert ref["flags"].any()


def test_tied_margins_follow_cleanlabs_unstable_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    # P rounded to 0.1 at N=2000: many margins tie at the pruning cut-off, and which tied examples
    # cleanlab flags comes from numpy's default (not stable) argsort.
    rng = np.random.default_rng(3)
    truth = rng.random((2000, 4)) < 0.3
    Y = truth ^ (rng.random((2000, 4)) < 0.1)
    P = np.round(np.where(truth, rng.beta(4, 1.5, (2000, 4)), rng.beta(1.5, 4, (2000, 4))), 1)
    ref = assert_parity(Y, P)

    # The case discriminates: breaking ties by a stable sort instead would disagree with cleanlab.
    def stable_top_m(margin: np.ndarray, m: int, out: np.ndarray) -> None:
        out[np.argsort(-margin, kind="stable")[:m]] = True

    monkeypatch.setattr(cp, "_top_m", stable_top_m)
    assert not np.array_equal(cp.per_tag_issues(Y, P), ref["per_tag"])


def test_calibration_matches_cleanlab_on_many_joints() -> None:
    # Calibration + row-total-preserving rounding is where summation order and round-half-even ties
    # decide counts; 4000 random raw joints (diagonal >= 1, as cleanlab builds them).
    rng = np.random.default_rng(0)
    m = 4000
    n = rng.integers(2, 3000, m)
    n1 = np.minimum((rng.random(m) * (n + 1)).astype(int), n)
    raw = np.empty((m, 2, 2), dtype=np.int64)
    for i in range(m):
        raw[i, 0] = rng.integers(0, max(1, n[i] - n1[i]) + 1, 2)
        raw[i, 1] = rng.integers(0, max(1, n1[i]) + 1, 2)
    raw[:, 0, 0] = np.maximum(raw[:, 0, 0], 1)
    raw[:, 1, 1] = np.maximum(raw[:, 1, 1], 1)
    expected = np.stack(
        [
            calibrate_confident_joint(raw[i], np.repeat([0, 1], [n[i] - n1[i], n1[i]]))
            for i in range(m)
        ]
    )
    np.testing.assert_array_equal(cp._calibrate(raw, n - n1, n1), expected)


def test_float32_tie_in_the_prediction_nudge() -> None:
    # cleanlab drops a flag when argmax([1 - p, p]) equals the given state after adding 1e-6 to the
    # given class; in float32, p = 0.4999995 makes p + 1e-6 == 1 - p exactly, and the tie goes to
    # class 0, so a given-positive example there stays flagged.
    b = np.float32(0.4999995)
    assert b + np.float32(1e-6) == 1 - b
    y = np.r_[np.ones(40, dtype=bool), np.zeros(160, dtype=bool)]
    p = np.r_[np.full(3, 0.1), [b], np.full(36, 0.95), np.full(160, 0.6)].astype(np.float32)
    Y, P = np.c_[y, ~y], np.c_[p, 1 - p].astype(np.float32)
    ref = assert_parity(Y, P)
    assert ref["per_tag"][3, 0]


def test_example_exactly_at_the_confident_cutoff() -> None:
    # A given-negative whose p equals the cut-off mean(p | given) - 1e-6 exactly counts as confidently
    # positive (>=). The mean must be cleanlab's np.mean (pairwise summation): a plain running sum
    # gives a cut-off one ulp higher here, and the example would not be flagged.
    rng = np.random.default_rng(0)
    pos = rng.uniform(0.6, 1.0, 50)
    cut = np.mean(pos) - 1e-6
    assert np.cumsum(pos)[-1] / 50 - 1e-6 > cut
    p = np.r_[pos, rng.uniform(0.0, 0.3, 150), [cut]]
    y = np.r_[np.ones(50, dtype=bool), np.zeros(151, dtype=bool)]
    Y, P = np.c_[y, ~y], np.c_[p, rng.uniform(0, 1, len(p))]
    ref = assert_parity(Y, P)
    assert np.flatnonzero(ref["per_tag"][:, 0]).tolist() == [200]


def test_blocking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks: 3 tags per tag block, 58 rows per score block, 7-row transpose copies.
    Y, P = make_case(7, 300, 17, "ties")
    monkeypatch.setattr(cp, "CHUNK_ELEMENTS", 1000)
    monkeypatch.setattr(cp, "MIN_BLOCK_TAGS", 1)
    monkeypatch.setattr(cp, "SCORE_BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(cp, "_TRANSPOSE_ROWS", 7)
    assert len(list(cp._tag_blocks(300, 17))) == 6
    assert_parity(Y, P)


def test_input_layouts_and_dtypes_give_same_result() -> None:
    Y, P = make_case(11, 300, 5, "smooth")
    expected = cp.per_tag_issues(Y, P)
    expected_scores = cp.label_quality_scores(Y, P)
    strided = np.zeros((P.shape[0], 2 * P.shape[1]))
    strided[:, ::2] = P
    for Yv, Pv in [
        (Y.astype(np.int64), P),
        (Y.astype(np.float32), np.asfortranarray(P)),
        (Y.astype(np.uint8), strided[:, ::2]),  # non-contiguous view
        (pd.DataFrame(Y.astype(int)), pd.DataFrame(P)),
    ]:
        np.testing.assert_array_equal(cp.per_tag_issues(Yv, Pv), expected)
        np.testing.assert_array_equal(cp.label_quality_scores(Yv, Pv), expected_scores)


# --------------------------------------------------------------------------------------------------
# cleanlab's published examples (own re-statements, not copies)


def test_docstring_example_scores() -> None:
    # cleanlab's get_label_quality_scores docstring: labels [[1], [0, 2]] -> scores [0.9, 0.5].
    Y = np.array([[0, 1, 0], [1, 0, 1]])
    P = np.array([[0.1, 0.9, 0.1], [0.4, 0.1, 0.9]])
    np.testing.assert_allclose(cp.label_quality_scores(Y, P), [0.9, 0.5], atol=1e-12)
    np.testing.assert_allclose(get_label_quality_scores(as_lists(Y), P), [0.9, 0.5], atol=1e-12)


def test_cyclic_fixture_flags_exactly_the_shifted_examples() -> None:
    # In the style of cleanlab's tests (tests/test_multilabel_classification.py, `data_multilabel`):
    # example i carries tag i % 6 and the model agrees (0.85 vs 0.05), except the last 12 examples,
    # where the model's 0.85 sits on tag (i + 3) % 6.
    n, k, shifted = 120, 6, 12
    Y = np.zeros((n, k), dtype=int)
    P = np.full((n, k), 0.05)
    for i in range(n):
        Y[i, i % k] = 1
        P[i, (i + 3) % k if i >= n - shifted else i % k] = 0.85
    assert_parity(Y, P)

    result = cp.detect_parity(Y, P)
    np.testing.assert_array_equal(np.flatnonzero(result.flags), np.arange(n - shifted, n))
    d = result.details
    assert len(d) == 2 * shifted  # each: its given tag is 'incorrect', the predicted one 'missing'
    for i, rows in d.groupby("example_index"):
        kinds = dict(zip(rows["kind"].astype(str), rows["tag_index"]))
        assert kinds == {"incorrect": i % k, "missing": (i + 3) % k}
    assert (result.scores[n - shifted :] < result.scores[: n - shifted].min()).all()


# --------------------------------------------------------------------------------------------------
# where cleanlab raises, we still answer


def test_tag_given_to_every_example_is_never_flagged() -> None:
    Y, P = make_case(5, 300, 5, "smooth")
    Y[:, 3] = True
    labels = as_lists(Y)
    # cleanlab: ValueError("Labels must contain at least 2 classes.") from its binary check of tag 3.
    with pytest.raises(ValueError, match="at least 2 classes"):
        find_multilabel_issues_per_class(labels, P, n_jobs=1)
    ours = cp.per_tag_issues(Y, P)
    assert not ours[:, 3].any()
    others = [0, 1, 2, 4]  # tags are independent problems: the rest still matches cleanlab
    np.testing.assert_array_equal(ours[:, others], cleanlab_results(Y[:, others], P[:, others])["per_tag"])
    np.testing.assert_allclose(
        cp.label_quality_scores(Y, P), get_label_quality_scores(labels, P), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("fill", [0, 1])
def test_constant_labels(fill: int) -> None:
    rng = np.random.default_rng(fill)
    Y = np.full((40, 3), fill)
    P = rng.random((40, 3))
    # cleanlab scores: all-zero Y -> ValueError("max() arg is an empty sequence");
    # all-one Y -> ValueError("Labels must be in multi-label format.").
    with pytest.raises(ValueError):
        get_label_quality_scores(as_lists(Y), P)
    self_conf = P if fill else 1 - P
    ema = np.sort(self_conf, axis=1)[:, ::-1]
    expected = ema[:, 0]
    for j in range(1, 3):
        expected = 0.8 * ema[:, j] + 0.2 * expected
    np.testing.assert_allclose(cp.label_quality_scores(Y, P), expected, atol=1e-12)
    ours = cp.per_tag_issues(Y, P)
    if fill == 0:  # cleanlab's flags work for all-zero Y: match them
        np.testing.assert_array_equal(
            ours, find_multilabel_issues_per_class(as_lists(Y), P, n_jobs=1)
        )
    else:  # cleanlab: ValueError("Labels must contain at least 2 classes.")
        assert not ours.any()


def test_single_tag() -> None:
    rng = np.random.default_rng(2)
    truth = rng.random((80, 1)) < 0.4
    Y = truth ^ (rng.random((80, 1)) < 0.1)
    P = np.clip(truth + rng.normal(0, 0.25, (80, 1)), 0, 1)
    # cleanlab scores: ValueError("Labels must be in multi-label format.") for K = 1; flags work.
    with pytest.raises(ValueError, match="multi-label format"):
        get_label_quality_scores(as_lists(Y), P)
    np.testing.assert_allclose(cp.label_quality_scores(Y, P), np.where(Y, P, 1 - P)[:, 0])
    flags = cp.per_tag_issues(Y, P)
    np.testing.assert_array_equal(flags, find_multilabel_issues_per_class(as_lists(Y), P, n_jobs=1))
    assert flags.any()


def test_tiny_and_empty_inputs() -> None:
    # N=1: cleanlab raises ValueError("Labels must contain at least 2 classes.") (a tag given to all).
    r = cp.detect_parity(np.array([[1, 0, 1]]), np.array([[0.2, 0.7, 0.9]]))
    assert r.flags.tolist() == [False] and r.scores.shape == (1,)
    # N=0: cleanlab raises ValueError("min() arg is an empty sequence").
    r = cp.detect_parity(np.zeros((0, 3)), np.zeros((0, 3)))
    assert r.scores.shape == (0,) and r.flags.shape == (0,) and len(r.details) == 0
    # K=0: nothing to doubt.
    r = cp.detect_parity(np.zeros((4, 0)), np.zeros((4, 0)))
    assert r.scores.tolist() == [1.0] * 4 and not r.flags.any()
    # N=2 works in cleanlab: match it.
    assert_parity(np.array([[1, 0, 1], [0, 1, 0]]), np.array([[0.2, 0.7, 0.9], [0.5, 0.5, 0.5]]))


@pytest.mark.parametrize(
    "P_bad",
    [np.array([[0.5, 1.1]]), np.array([[0.5, -0.01]]), np.array([[np.nan, 0.5]])],
)
def test_rejects_invalid_probabilities(P_bad: np.ndarray) -> None:
    P = np.vstack([np.full((3, 2), 0.5), P_bad])
    with pytest.raises(ValueError, match="probabilities"):
        cp.find_label_issues(np.zeros((4, 2)), P)


def test_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="0/1"):
        cp.find_label_issues(np.array([[0, 2], [1, 0]]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="shape"):
        cp.find_label_issues(np.zeros((3, 2)), np.full((2, 2), 0.5))


# --------------------------------------------------------------------------------------------------
# the detector


def test_detect_parity_result_is_consistent() -> None:
    Y, P = make_case(21, 2000, 17, "smooth")
    result = cp.detect_parity(Y, P)
    assert isinstance(result, DetectorResult)
    np.testing.assert_array_equal(result.scores, cp.label_quality_scores(Y, P))
    np.testing.assert_array_equal(result.flags, cp.find_label_issues(Y, P))

    d = result.details
    assert list(d.columns) == cp.TAG_ISSUE_COLUMNS
    per_tag = cp.per_tag_issues(Y, P)
    rows, cols = np.nonzero(per_tag)
    np.testing.assert_array_equal(d["example_index"], rows)
    np.testing.assert_array_equal(d["tag_index"], cols)
    np.testing.assert_array_equal(d["given"], Y[rows, cols])
    np.testing.assert_array_equal(d["probability"], P[rows, cols])
    assert (d["kind"].astype(str) == np.where(d["given"], "incorrect", "missing")).all()
    np.testing.assert_allclose(d["score"], np.where(d["given"], d["probability"], 1 - d["probability"]))
    # a flagged tag disagrees with the model: given tags have p < 0.5, missing ones p > 0.5
    assert (d.loc[d["given"], "probability"] < 0.5).all()
    assert (d.loc[~d["given"], "probability"] > 0.5).all()

    s = result.summary
    assert s["n_label_issues"] == int(result.flags.sum()) == d["example_index"].nunique()
    assert s["n_tag_issues"] == len(d) == s["n_incorrect"] + s["n_missing"]
    assert s["incorrect_per_tag"] == np.bincount(cols[Y[rows, cols]], minlength=17).tolist()
    assert s["tags_given_to_none"] == [0] and s["tags_given_to_all"] == []
    assert s["missing_per_tag"][0] == 0 and s["incorrect_per_tag"][0] == 0
    json.dumps(s)  # JSON-serialisable
