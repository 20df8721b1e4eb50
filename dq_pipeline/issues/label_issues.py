"""Label issues: tags present but wrong ('incorrect') and tags absent but likely true ('missing').

Default method ``confident_learning``: per-tag confident-learning thresholds on out-of-fold
probabilities. For tag k, ``t1[k]`` is the mean probability over examples that carry it and ``t0[k]``
the mean (1 - probability) over examples that do not. An example that carries k is *confidently
negative* when ``1 - p >= t0[k]`` and that beats the positive side (``p < t1[k]`` or ``1 - p > p``);
symmetric for a tag it does not carry. Those tags are flagged; the suggested tag set flips them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

DEFAULT_METHOD = "confident_learning"
DEFAULT_EMA_ALPHA = 0.8
#: How per-tag self-confidences become one example score. 'min' (the worst tag) ranked planted errors
#: better than cleanlab's 'ema' on MULAN scene/yeast (AUROC 0.83 vs 0.77, 0.68 vs 0.64; see bench/).
DEFAULT_POOLING = "min"
POOLINGS = ("min", "ema")
TAG_ISSUE_COLUMNS = ["example_index", "tag_index", "given", "probability", "kind", "score"]


def self_confidence(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(N, K) probability the model gives to the *given* state of each tag: p if carried, else 1 - p.

    High = the given state agrees with the model; low = likely wrong.
    """
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    return np.where(Y, P, 1.0 - P)


def per_tag_thresholds(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag confident-learning thresholds ``(t1, t0)``, each (K,).

    t1[k] = mean p over examples carrying k; t0[k] = mean (1 - p) over examples not carrying it.
    A tag with no example on one side gets threshold 1.0 there (that side can never be confident).
    """
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    n_pos = Y.sum(axis=0)
    n_neg = Y.shape[0] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        t1 = np.where(n_pos > 0, (P * Y).sum(axis=0) / np.maximum(n_pos, 1), 1.0)
        t0 = np.where(n_neg > 0, ((1.0 - P) * ~Y).sum(axis=0) / np.maximum(n_neg, 1), 1.0)
    return t1, t0


def confident_tag_flags(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(N, K) bool: True where the given state of a tag is confidently contradicted by P."""
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    t1, t0 = per_tag_thresholds(Y, P)
    conf_pos = P >= t1
    conf_neg = (1.0 - P) >= t0
    # Both sides above threshold: the larger probability decides (cleanlab's argmax rule).
    says_neg = conf_neg & (~conf_pos | (1.0 - P > P))
    says_pos = conf_pos & (~conf_neg | (P > 1.0 - P))
    return np.where(Y, says_neg, says_pos)


def ema_pool(scores: np.ndarray, alpha: float = DEFAULT_EMA_ALPHA) -> np.ndarray:
    """Pool (N, K) per-tag scores into (N,) with an exponential moving average over each row sorted
    in descending order, so the lowest (worst) tag weighs most (cleanlab's default aggregator)."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=1)
    out = s[:, 0].copy()
    for j in range(1, s.shape[1]):
        out = alpha * s[:, j] + (1.0 - alpha) * out
    return out


def tag_issue_rows(Y: np.ndarray, P: np.ndarray, flags: np.ndarray) -> pd.DataFrame:
    """One row per flagged (example, tag) with the columns of :data:`TAG_ISSUE_COLUMNS`.

    ``kind`` is 'incorrect' for a carried tag, 'missing' for an absent one; ``score`` is the tag's
    self-confidence (low = more certain it is wrong).
    """
    Y = np.asarray(Y, dtype=bool)
    rows, cols = np.nonzero(flags)
    given = Y[rows, cols]
    prob = np.asarray(P, dtype=np.float64)[rows, cols]
    return pd.DataFrame(
        {
            "example_index": rows.astype(np.int64),
            "tag_index": cols.astype(np.int64),
            "given": given,
            "probability": prob,
            "kind": np.where(given, "incorrect", "missing"),
            "score": np.where(given, prob, 1.0 - prob),
        },
        columns=TAG_ISSUE_COLUMNS,
    )


def suggested_tags(Y: np.ndarray, tag_flags: np.ndarray) -> np.ndarray:
    """(N, K) uint8 suggested tags: the given tags with every flagged tag flipped."""
    return (np.asarray(Y, dtype=bool) ^ np.asarray(tag_flags, dtype=bool)).astype(np.uint8)


def find_label_issues(
    Y: np.ndarray,
    P: np.ndarray,
    method: str = DEFAULT_METHOD,
    pooling: str = DEFAULT_POOLING,
    alpha: float = DEFAULT_EMA_ALPHA,
) -> DetectorResult:
    """Detect label issues from given tags Y (N, K) 0/1 and out-of-fold probabilities P (N, K).

    Returns a :class:`DetectorResult`: ``scores`` = label quality in [0, 1] (low = likely wrong;
    per-tag self-confidence pooled by ``pooling``: 'min' = worst tag, 'ema' = cleanlab's exponential
    moving average with ``alpha``), ``flags`` = example has at least one flagged tag,
    ``details`` = one row per flagged (example, tag) (:func:`tag_issue_rows`).
    """
    if method != "confident_learning":
        raise ValueError(f"unknown label-issue method {method!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape:
        raise ValueError(f"tags {Y.shape} and probabilities {P.shape} differ in shape")
    tag_flags = confident_tag_flags(Y, P)
    details = tag_issue_rows(Y, P, tag_flags)
    conf = self_confidence(Y, P)
    pooled = conf.min(axis=1) if pooling == "min" else ema_pool(conf, alpha)
    scores = np.clip(pooled, 0.0, 1.0)
    flags = tag_flags.any(axis=1)
    summary = {
        "method": method,
        "pooling": pooling,
        "n_label_issues": int(flags.sum()),
        "n_tag_issues": int(len(details)),
        "n_missing": int((details["kind"] == "missing").sum()),
        "n_incorrect": int((details["kind"] == "incorrect").sum()),
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)
