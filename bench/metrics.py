"""Metrics for label-error detection against a known set of planted errors.

Conventions: scores are label-quality scores, **low = more likely an error** (as cleanlab); ranking
metrics therefore rank by ``-score``. ``is_error`` / ``changed`` are the ground truth from
``bench/noise.py``. A metric that is undefined on the input (e.g. AUROC with no error at all, precision
of an empty flagged set) is NaN; averages in the report skip NaNs.
"""

from __future__ import annotations

import numpy as np


def _binary(truth: np.ndarray) -> np.ndarray:
    return np.asarray(truth, dtype=bool).ravel()


def auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``-scores`` for ``truth`` (NaN if truth has one class only)."""
    from sklearn.metrics import roc_auc_score

    t = _binary(truth)
    if t.all() or not t.any():
        return float("nan")
    return float(roc_auc_score(t, -np.asarray(scores, dtype=np.float64).ravel()))


def auprc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's step-wise area under the precision-recall curve) of ``-scores``.

    NaN when there is no positive; a random ranking scores about the positive rate.
    """
    from sklearn.metrics import average_precision_score

    t = _binary(truth)
    if not t.any():
        return float("nan")
    return float(average_precision_score(t, -np.asarray(scores, dtype=np.float64).ravel()))


def precision_at(truth: np.ndarray, scores: np.ndarray, t: int | None = None) -> float:
    """Precision among the ``t`` lowest-scored items (default ``t`` = number of true errors).

    Ties at the cut-off are resolved in expectation: the items strictly below the ``t``-th lowest score
    all count, and the remaining places are filled by the tied items at their average error rate (the
    precision a uniformly random tie-break gives in expectation). NaN when ``t`` is 0.
    """
    truth = _binary(truth)
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = int(truth.sum()) if t is None else int(t)
    if t <= 0:
        return float("nan")
    t = min(t, len(s))
    cut = np.partition(s, t - 1)[t - 1]
    below = s < cut
    at = s == cut
    n_below = int(below.sum())
    hits = truth[below].sum() + (t - n_below) * truth[at].mean()
    return float(hits / t)


def best_f1(truth: np.ndarray, scores: np.ndarray) -> float:
    """The highest flag F1 that any score threshold of this ranking reaches: flag every item scored at or below
    a cut-off (tied items go in or out together), best cut-off chosen knowing the truth.

    The ceiling of every flag-count rule built on these scores, calibrated or not (precision at the true count,
    :func:`precision_at`, is the F1 of flagging exactly as many items as there are errors). NaN without an error.
    """
    t = _binary(truth)
    n_true = int(t.sum())
    if n_true == 0:
        return float("nan")
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(s, kind="stable")
    tp = np.cumsum(t[order])
    ends = np.flatnonzero(np.r_[s[order][1:] != s[order][:-1], True])  # last index of each run of tied scores
    return float(np.max(2.0 * tp[ends] / (ends + 1 + n_true)))


def flag_metrics(truth: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a flagged set.

    precision = NaN when nothing is flagged; recall = NaN when there is no true error; F1 = 0 when either
    side is empty but not both (NaN when both are).
    """
    t = _binary(truth)
    f = _binary(flags)
    tp = int((t & f).sum())
    n_flag, n_true = int(f.sum()), int(t.sum())
    precision = tp / n_flag if n_flag else float("nan")
    recall = tp / n_true if n_true else float("nan")
    if n_flag == 0 and n_true == 0:
        f1 = float("nan")
    else:
        f1 = 2.0 * tp / (n_flag + n_true)
    return {"precision": precision, "recall": recall, "f1": f1, "n_flagged": n_flag, "n_true": n_true}


def example_metrics(is_error: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Example-level metrics.

    Parameters
    ----------
    is_error : (N,) bool, True where the example has at least one planted error.
    scores : (N,) float, label quality (low = likely error).
    flags : (N,) bool, the method's flagged examples.

    Returns
    -------
    dict with ``auroc``, ``auprc``, ``prec_at_t`` (precision among the T lowest scores, T = number of
    corrupted examples), ``precision``, ``recall``, ``f1`` and ``n_flagged`` of the flags.
    """
    out = {
        "auroc": auroc(is_error, scores),
        "auprc": auprc(is_error, scores),
        "prec_at_t": precision_at(is_error, scores),
    }
    out.update({k: v for k, v in flag_metrics(is_error, flags).items() if k != "n_true"})
    return out


def tag_metrics(
    Y_given: np.ndarray, changed: np.ndarray, tag_scores: np.ndarray, tag_flags: np.ndarray
) -> dict[str, float]:
    """Tag-level metrics over (example, tag) pairs.

    Parameters
    ----------
    Y_given : (N, K) 0/1 noisy tags the methods saw.
    changed : (N, K) bool, True where the given state is wrong.
    tag_scores : (N, K) float, per-tag quality (e.g. self-confidence), low = likely wrong.
    tag_flags : (N, K) bool, the method's flagged (example, tag) pairs.

    Returns
    -------
    dict with ``tag_auprc`` and ``tag_precision`` / ``tag_recall`` / ``tag_f1`` over all pairs, and the same
    restricted to given-absent pairs (``missing_*``: truly present, given absent) and to given-present
    pairs (``incorrect_*``: given, truly absent).
    """
    Y_given = np.asarray(Y_given, dtype=bool)
    changed = np.asarray(changed, dtype=bool)
    tag_scores = np.asarray(tag_scores, dtype=np.float64)
    tag_flags = np.asarray(tag_flags, dtype=bool)
    out: dict[str, float] = {}
    for prefix, mask in (("tag", np.ones_like(Y_given)), ("missing", ~Y_given), ("incorrect", Y_given)):
        out[f"{prefix}_auprc"] = auprc(changed[mask], tag_scores[mask])
        fm = flag_metrics(changed[mask], tag_flags[mask])
        out[f"{prefix}_precision"] = fm["precision"]
        out[f"{prefix}_recall"] = fm["recall"]
        out[f"{prefix}_f1"] = fm["f1"]
    return out


def suggestion_metrics(Y_clean: np.ndarray, Y_given: np.ndarray, Y_suggested: np.ndarray) -> dict[str, float]:
    """How often the suggested tag sets are right.

    Parameters
    ----------
    Y_clean, Y_given, Y_suggested : (N, K) 0/1 - the truth, the noisy tags the method saw, and the
    method's suggested tags (given tags with its flagged tags flipped).

    Returns
    -------
    dict with ``sugg_exact_corrupted`` = share of truly corrupted examples (given != clean) whose
    suggested set equals the clean set (NaN when none is corrupted), ``sugg_kept_clean`` = share of
    clean examples whose suggested set equals their given set, ``sugg_changed`` = number of examples
    whose suggestion differs from the given set, and ``sugg_right_when_changed`` = share of those whose
    suggestion equals the clean set (NaN when none changed).
    """
    Yc = np.asarray(Y_clean, dtype=bool)
    Yg = np.asarray(Y_given, dtype=bool)
    Ys = np.asarray(Y_suggested, dtype=bool)
    corrupted = (Yc != Yg).any(axis=1)
    exact = (Ys == Yc).all(axis=1)
    kept = (Ys == Yg).all(axis=1)
    changed = ~kept
    return {
        "sugg_exact_corrupted": float(exact[corrupted].mean()) if corrupted.any() else float("nan"),
        "sugg_kept_clean": float(kept[~corrupted].mean()) if (~corrupted).any() else float("nan"),
        "sugg_changed": int(changed.sum()),
        "sugg_right_when_changed": float(exact[changed].mean()) if changed.any() else float("nan"),
    }


def flag_ratio(n_flagged: int, n_true: int) -> float:
    """Flagged count / true error count (NaN without true errors); 1.0 = as many flags as errors."""
    return float(n_flagged) / n_true if n_true else float("nan")
