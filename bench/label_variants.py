"""Label-issue variants that lost to the shipped default (kept for the benchmarks, not in production).

Measured in ``bench/bench_quality.py`` (results: ``bench/results/quality.md``); the shipped detector is
:func:`dq_pipeline.issues.label_issues.find_label_issues`. Moved here from the production module (issue 10,
deliverable 6): per-tag flag rules (``confident_learning``, cleanlab's ``prune_by_noise_rate``), poolings of
per-tag scores into example scores (``min``, ``ema``, ``product``), per-tag scorings (``self_confidence``,
``threshold_normalized``) and evidence sources (``model``, ``knn``, ``calibrated``, ``cooccurrence``,
``cooccurrence_knn``), and the previous default ``ensemble`` whose flags were cleanlab's rule on the stacked
probabilities (flagged about half of all examples whatever the noise rate).

* ``method='confident_learning'``: per tag, ``t1[k]`` = mean probability over examples carrying it, ``t0[k]`` the
  mean (1 - probability) over examples not carrying it; a carried tag is flagged when ``1 - p >= t0[k]`` beats
  the positive side, symmetric for an absent one.
* ``pooling``: 'min' = the worst tag, 'ema' = cleanlab's exponential moving average (alpha 0.8) over the scores
  sorted in descending order, 'product' = product over tags.
* ``scoring='threshold_normalized'``: ``min(1, p / t1[k])`` if carried, ``min(1, (1 - p) / t0[k])`` if not.
* ``evidence``: 'model' = P; 'knn' = P averaged with the nearest neighbours' tags; 'calibrated' /
  'cooccurrence' / 'cooccurrence_knn' = the stacked second stage without / with the other tags / also with
  the kNN votes (:func:`dq_pipeline.issues.label_issues.stacked_probabilities`).
"""

from __future__ import annotations

import numpy as np

from dq_pipeline.issues.base import DetectorResult
from dq_pipeline.issues.label_issues import (
    DEFAULT_KNN_WEIGHT,
    knn_tag_votes,
    log_joint_score,
    readable_quality,
    self_confidence,
    stacked_probabilities,
    tag_issue_rows,
)

DEFAULT_EMA_ALPHA = 0.8
POOLINGS = ("min", "ema", "product")
METHODS = ("confident_learning", "prune_by_noise_rate", "ensemble_cleanlab_flags")
SCORINGS = ("self_confidence", "threshold_normalized")
EVIDENCES = ("model", "knn", "calibrated", "cooccurrence", "cooccurrence_knn")
FEATURE_EVIDENCES = ("knn", "cooccurrence_knn")


def per_tag_thresholds(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag confident-learning thresholds ``(t1, t0)``, each (K,); 1.0 where a side has no example."""
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
    says_neg = conf_neg & (~conf_pos | (1.0 - P > P))
    says_pos = conf_pos & (~conf_neg | (P > 1.0 - P))
    return np.where(Y, says_neg, says_pos)


def ema_pool(scores: np.ndarray, alpha: float = DEFAULT_EMA_ALPHA) -> np.ndarray:
    """(N,) EMA over each row of (N, K) scores sorted descending (cleanlab's aggregator)."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=1)
    out = s[:, 0].copy()
    for j in range(1, s.shape[1]):
        out = alpha * s[:, j] + (1.0 - alpha) * out
    return out


def threshold_normalized_confidence(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(N, K) self-confidence relative to each tag's confident-learning threshold, in [0, 1]."""
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    t1, t0 = per_tag_thresholds(Y, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(Y, P / np.maximum(t1, 1e-12), (1.0 - P) / np.maximum(t0, 1e-12))
    return np.clip(ratio, 0.0, 1.0)


def pool_scores(scores: np.ndarray, pooling: str = "min", alpha: float = DEFAULT_EMA_ALPHA) -> np.ndarray:
    """Pool (N, K) per-tag scores into (N,) example scores (low = likely wrong)."""
    scores = np.asarray(scores, dtype=np.float64)
    if pooling == "min":
        return scores.min(axis=1) if scores.shape[1] else np.ones(len(scores))
    if pooling == "ema":
        return ema_pool(scores, alpha) if scores.shape[1] else np.ones(len(scores))
    if pooling == "product":
        return np.prod(scores, axis=1)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def evidence_probabilities(Y: np.ndarray, P: np.ndarray, evidence: str = "model",
                           features: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """(N, K) probabilities that scores and flags are computed from, by ``evidence`` (see the module doc)."""
    if evidence not in EVIDENCES:
        raise ValueError(f"unknown evidence {evidence!r}; choose one of {EVIDENCES}")
    if evidence in FEATURE_EVIDENCES and features is None:
        raise ValueError(f"evidence {evidence!r} needs features (N, D)")
    P = np.asarray(P, dtype=np.float64)
    if evidence == "model":
        return P
    if evidence == "knn":
        return (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * knn_tag_votes(features, Y)
    if evidence == "calibrated":
        return stacked_probabilities(Y, P, use_other_tags=False, seed=seed)
    if evidence == "cooccurrence":
        return stacked_probabilities(Y, P, use_other_tags=True, seed=seed)
    return stacked_probabilities(Y, P, use_other_tags=True, extra=knn_tag_votes(features, Y), seed=seed)


def combine_evidence(Y: np.ndarray, P_cooc: np.ndarray, P_knn: np.ndarray) -> DetectorResult:
    """The previous default ('ensemble' before issue 10): joint score of the two evidence sources, flags =
    cleanlab's prune-by-noise-rate rule on ``P_cooc`` (about half of all examples on the dev suite)."""
    from dq_pipeline.issues.cleanlab_parity import per_tag_issues

    Y = np.asarray(Y, dtype=bool)
    scores = readable_quality(log_joint_score(self_confidence(Y, P_cooc), self_confidence(Y, P_knn)))
    tag_flags = per_tag_issues(Y, P_cooc)
    details = tag_issue_rows(Y, P_cooc, tag_flags)
    flags = tag_flags.any(axis=1)
    return DetectorResult(scores=scores, flags=flags, summary={"method": "ensemble_cleanlab_flags",
                                                               "n_label_issues": int(flags.sum())}, details=details)


def variant_label_issues(Y: np.ndarray, P: np.ndarray, method: str = "confident_learning", pooling: str = "min",
                         alpha: float = DEFAULT_EMA_ALPHA, scoring: str = "self_confidence",
                         evidence: str = "model", features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """A losing variant by name (the old ``find_label_issues`` options). Y, P: (N, K)."""
    if method not in METHODS:
        raise ValueError(f"unknown variant method {method!r}; choose one of {METHODS}")
    if method == "ensemble_cleanlab_flags":
        if features is None:
            raise ValueError("'ensemble_cleanlab_flags' needs features (N, D)")
        votes = knn_tag_votes(features, Y)
        P_cooc = stacked_probabilities(Y, P, use_other_tags=True, extra=votes, seed=seed)
        P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * np.asarray(P, dtype=np.float64) + DEFAULT_KNN_WEIGHT * votes
        return combine_evidence(Y, P_cooc, P_knn)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORINGS}")
    Y = np.asarray(Y, dtype=bool)
    P = evidence_probabilities(Y, np.asarray(P, dtype=np.float64), evidence, features, seed)
    if method == "confident_learning":
        tag_flags = confident_tag_flags(Y, P)
    else:
        from dq_pipeline.issues.cleanlab_parity import per_tag_issues

        tag_flags = per_tag_issues(Y, P)
    details = tag_issue_rows(Y, P, tag_flags)
    conf = self_confidence(Y, P) if scoring == "self_confidence" else threshold_normalized_confidence(Y, P)
    scores = np.clip(pool_scores(conf, pooling, alpha), 0.0, 1.0)
    flags = tag_flags.any(axis=1)
    summary = {"method": method, "pooling": pooling, "scoring": scoring, "evidence": evidence,
               "n_label_issues": int(flags.sum()), "n_tag_issues": int(len(details))}
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)


def previous_default(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The default before issue 10 (for ``bench_quality.py --candidate before=bench.label_variants:previous_default``):
    the same joint score, flags and suggestions by cleanlab's prune-by-noise-rate rule on the stacked
    probabilities."""
    return variant_label_issues(Y, P, method="ensemble_cleanlab_flags", features=features, seed=seed)
