"""Dataset-level summaries: per-tag issue rates, a health score and tag confusions.

``tag_issues`` below is the per-(example, tag) table of the label-issue detector, with columns
``example_index``, ``tag_index``, ``given`` (bool), ``probability``, ``kind``
(``'missing'``: tag absent but likely applies; ``'incorrect'``: tag given but likely wrong)
and ``score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_TOP: int = 10

CLASS_SUMMARY_COLUMNS = [
    "tag", "n_given", "n_suggested", "n_missing", "n_incorrect",
    "missing_rate", "incorrect_rate", "oof_auroc",
]


def _kind_counts(tag_issues: pd.DataFrame, kind: str, K: int) -> np.ndarray:
    rows = tag_issues.loc[tag_issues["kind"] == kind]
    # count distinct examples, so an accidental repeated row is not double counted
    rows = rows.drop_duplicates(["example_index", "tag_index"])
    return np.bincount(rows["tag_index"].to_numpy(dtype=np.int64), minlength=K)[:K]


def class_summary(
    Y: np.ndarray,
    S: np.ndarray,
    tag_issues: pd.DataFrame,
    classes: Sequence[str],
    oof_auroc: Sequence[float | None],
) -> pd.DataFrame:
    """One row per tag: how often it is given, suggested, missing and incorrect.

    Parameters
    ----------
    Y : np.ndarray, shape (N, K), 0/1
        Given tags.
    S : np.ndarray, shape (N, K), 0/1
        Suggested (corrected) tags.
    tag_issues : pd.DataFrame
        Flagged (example, tag) rows (module docstring).
    classes : sequence of K str
        Tag names, in column order.
    oof_auroc : sequence of K float (NaN/None where undefined)
        Out-of-fold AUROC per tag.

    Returns
    -------
    pd.DataFrame
        Columns ``tag``, ``n_given`` (examples carrying the tag in Y), ``n_suggested``
        (carrying it in S), ``n_missing`` / ``n_incorrect`` (tag_issues rows of that kind),
        ``missing_rate = n_missing / (N - n_given)`` — denominator: examples that do **not**
        carry the tag, the only ones where it can be missing —,
        ``incorrect_rate = n_incorrect / n_given`` — denominator: examples that **do** carry
        it —, and ``oof_auroc``. A rate whose denominator is 0 is NaN.
    """
    Y = np.asarray(Y).astype(bool)
    S = np.asarray(S).astype(bool)
    N, K = Y.shape
    if S.shape != Y.shape or len(classes) != K or len(oof_auroc) != K:
        raise ValueError("Y, S, classes and oof_auroc must agree on N and K")
    n_given = Y.sum(axis=0).astype(np.int64)
    n_missing = _kind_counts(tag_issues, "missing", K)
    n_incorrect = _kind_counts(tag_issues, "incorrect", K)
    not_given = N - n_given
    with np.errstate(divide="ignore", invalid="ignore"):
        missing_rate = np.where(not_given > 0, n_missing / np.maximum(not_given, 1), np.nan)
        incorrect_rate = np.where(n_given > 0, n_incorrect / np.maximum(n_given, 1), np.nan)
    return pd.DataFrame(
        {
            "tag": list(classes),
            "n_given": n_given,
            "n_suggested": S.sum(axis=0).astype(np.int64),
            "n_missing": n_missing.astype(np.int64),
            "n_incorrect": n_incorrect.astype(np.int64),
            "missing_rate": missing_rate.astype(np.float64),
            "incorrect_rate": incorrect_rate.astype(np.float64),
            "oof_auroc": np.array([np.nan if a is None else a for a in oof_auroc], dtype=np.float64),
        },
        columns=CLASS_SUMMARY_COLUMNS,
    )


def health_score(flags: Mapping[str, np.ndarray]) -> float:
    """Fraction of examples with no issue flag at all, in [0, 1] (high = healthy).

    Parameters
    ----------
    flags : mapping name -> np.ndarray, shape (N,), bool
        Per-example flags of each detector (e.g. ``{"label_issue": ..., "ambiguous": ...,
        "outlier": ..., "near_duplicate": ...}``); the caller decides which issues count.

    Returns
    -------
    float
        ``1 - |union of flagged examples| / N``. An example flagged by several detectors counts
        once. 1.0 for an empty dataset (N = 0).
    """
    arrays = [np.asarray(f, dtype=bool) for f in flags.values()]
    if not arrays:
        raise ValueError("health_score needs at least one flag array (to know N)")
    n = arrays[0].shape[0]
    if any(a.shape != (n,) for a in arrays):
        raise ValueError("all flag arrays must have shape (N,)")
    if n == 0:
        return 1.0
    any_flag = np.logical_or.reduce(arrays)
    return float(1.0 - any_flag.mean())


def confusion_pairs(
    tag_issues: pd.DataFrame, classes: Sequence[str], top: int = DEFAULT_TOP
) -> pd.DataFrame:
    """Most common (missing tag, incorrect tag) pairs flagged in the same example.

    An example with tag A flagged ``'incorrect'`` and tag B flagged ``'missing'`` suggests A
    was given where B was meant: "A is confused with B".

    Returns
    -------
    pd.DataFrame
        Columns ``missing_tag``, ``incorrect_tag``, ``n_examples`` (distinct examples with
        that pair), at most ``top`` rows, most frequent first (ties by tag names).
    """
    cols = ["example_index", "tag_index"]
    missing = tag_issues.loc[tag_issues["kind"] == "missing", cols].drop_duplicates()
    incorrect = tag_issues.loc[tag_issues["kind"] == "incorrect", cols].drop_duplicates()
    pairs = missing.merge(incorrect, on="example_index", suffixes=("_missing", "_incorrect"))
    names = np.asarray(list(classes), dtype=object)
    out = pd.DataFrame(
        {
            "missing_tag": names[pairs["tag_index_missing"].to_numpy(dtype=np.int64)],
            "incorrect_tag": names[pairs["tag_index_incorrect"].to_numpy(dtype=np.int64)],
            "example_index": pairs["example_index"].to_numpy(),
        }
    )
    counts = (
        out.groupby(["missing_tag", "incorrect_tag"])["example_index"]
        .nunique()
        .rename("n_examples")
        .reset_index()
        .sort_values(["n_examples", "missing_tag", "incorrect_tag"],
                     ascending=[False, True, True], kind="stable")
    )
    counts["n_examples"] = counts["n_examples"].astype(np.int64)
    return counts.head(top).reset_index(drop=True)[["missing_tag", "incorrect_tag", "n_examples"]]
