"""Per-tag summary, health score and confusion pairs on a hand-computed example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.issues.summary import class_summary, confusion_pairs, health_score

CLASSES = ["a", "b", "c"]
#            a  b  c
Y = np.array([[1, 0, 0],   # 0
              [1, 1, 0],   # 1
              [0, 1, 0],   # 2
              [0, 0, 0],   # 3
              [1, 0, 0],   # 4
              [0, 1, 0]])  # 5
S = np.array([[0, 1, 0],
              [1, 0, 0],
              [0, 0, 1],
              [1, 0, 0],
              [1, 0, 1],
              [0, 0, 1]])


def _issues() -> pd.DataFrame:
    rows = [  # (example, tag, kind): every row also consistent with Y (given) and S
        (0, 0, "incorrect"), (0, 1, "missing"),
        (1, 1, "incorrect"),
        (2, 1, "incorrect"), (2, 2, "missing"),
        (3, 0, "missing"),
        (4, 2, "missing"),
        (5, 1, "incorrect"), (5, 2, "missing"),
    ]
    df = pd.DataFrame(rows, columns=["example_index", "tag_index", "kind"])
    df["given"] = df["kind"] == "incorrect"
    df["probability"] = np.where(df["given"], 0.1, 0.9)
    df["score"] = 0.1
    return df[["example_index", "tag_index", "given", "probability", "kind", "score"]]


def test_class_summary_counts_and_denominators() -> None:
    out = class_summary(Y, S, _issues(), CLASSES, [0.9, 0.75, None])
    assert list(out.columns) == ["tag", "n_given", "n_suggested", "n_missing", "n_incorrect",
                                 "missing_rate", "incorrect_rate", "oof_auroc"]
    assert out["tag"].tolist() == CLASSES
    assert out["n_given"].tolist() == [3, 3, 0]
    assert out["n_suggested"].tolist() == [3, 1, 3]
    assert out["n_missing"].tolist() == [1, 1, 3]
    assert out["n_incorrect"].tolist() == [1, 3, 0]
    # missing_rate: over the N - n_given examples NOT carrying the tag (6-3, 6-3, 6-0)
    assert out["missing_rate"].tolist() == pytest.approx([1 / 3, 1 / 3, 3 / 6])
    # incorrect_rate: over the n_given examples carrying it; undefined for c (never given)
    assert out["incorrect_rate"].iloc[:2].tolist() == pytest.approx([1 / 3, 3 / 3])
    assert np.isnan(out["incorrect_rate"].iloc[2])
    assert out["oof_auroc"].iloc[:2].tolist() == [0.9, 0.75] and np.isnan(out["oof_auroc"].iloc[2])


def test_class_summary_with_no_issues_and_a_tag_on_every_example() -> None:
    Yall = np.ones((4, 2), dtype=int)
    empty = _issues().iloc[:0]
    out = class_summary(Yall, Yall, empty, ["x", "y"], [np.nan, np.nan])
    assert out["n_missing"].tolist() == [0, 0] and out["n_incorrect"].tolist() == [0, 0]
    assert out["missing_rate"].isna().all()  # no example lacks the tag: rate undefined
    assert out["incorrect_rate"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        class_summary(Yall, Yall, empty, ["x"], [0.5])


def test_health_score_is_fraction_without_any_flag() -> None:
    flags = {
        "label_issue": np.array([1, 0, 0, 0, 0, 0], dtype=bool),
        "outlier": np.array([1, 0, 1, 0, 0, 0], dtype=bool),  # example 0 counted once
        "ambiguous": np.zeros(6, dtype=bool),
    }
    assert health_score(flags) == pytest.approx(4 / 6)
    assert health_score({"x": np.zeros(3, dtype=bool)}) == 1.0
    assert health_score({"x": np.ones(3, dtype=bool)}) == 0.0
    assert health_score({"x": np.zeros(0, dtype=bool)}) == 1.0
    with pytest.raises(ValueError):
        health_score({"x": np.zeros(3, dtype=bool), "y": np.zeros(4, dtype=bool)})
    with pytest.raises(ValueError):
        health_score({})


def test_confusion_pairs_counts_examples_per_missing_incorrect_pair() -> None:
    out = confusion_pairs(_issues(), CLASSES)
    assert list(out.columns) == ["missing_tag", "incorrect_tag", "n_examples"]
    # c missing where b given (examples 2 and 5); b missing where a given (example 0)
    assert out.values.tolist() == [["c", "b", 2], ["b", "a", 1]]
    assert confusion_pairs(_issues(), CLASSES, top=1).values.tolist() == [["c", "b", 2]]
    # a repeated row does not inflate the count of distinct examples
    doubled = pd.concat([_issues(), _issues()], ignore_index=True)
    assert confusion_pairs(doubled, CLASSES).values.tolist() == [["c", "b", 2], ["b", "a", 1]]
    assert confusion_pairs(_issues().iloc[:0], CLASSES).empty
