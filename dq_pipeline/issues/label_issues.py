"""Label issues: tags present but wrong ('incorrect') and tags absent but likely true ('missing').

Default method ``ensemble`` (chosen by ``bench/bench_quality.py``, see ``bench/results/quality.md``:
example-level AUPRC +0.19 over cleanlab on average over 6 real datasets x 3 noise models x 3 rates x
3 seeds, at least +0.046 on every dataset, better than cleanlab in 154 of 162 runs, per-tag flag F1
+0.147). It needs the features (N, D) next to Y and P: see :func:`ensemble_label_issues`.

``method='cleanlab'`` reproduces cleanlab 2.9's multi-label defaults exactly
(:mod:`dq_pipeline.issues.cleanlab_parity`), vectorised across tags.

``method='confident_learning'``: per-tag confident-learning thresholds on out-of-fold
probabilities. For tag k, ``t1[k]`` is the mean probability over examples that carry it and ``t0[k]``
the mean (1 - probability) over examples that do not. An example that carries k is *confidently
negative* when ``1 - p >= t0[k]`` and that beats the positive side (``p < t1[k]`` or ``1 - p > p``);
symmetric for a tag it does not carry. Those tags are flagged; the suggested tag set flips them.

Other options measured in ``bench/bench_quality.py`` (all lost to ``ensemble``; see the results):

* ``method='prune_by_noise_rate'``: cleanlab's per-tag flags (:mod:`dq_pipeline.issues.cleanlab_parity`).
* ``pooling='product'``: example score = product of the per-tag scores (with calibrated P, the chance
  that every given tag is right).
* ``scoring='threshold_normalized'``: per-tag self-confidence divided by the tag's confident-learning
  threshold (``p / t1[k]`` if carried, ``(1 - p) / t0[k]`` if not, capped at 1), so rare tags, whose
  probabilities are low even when right, are not over-flagged.
* ``evidence``: which probabilities the scores and flags are computed from. ``'model'`` = P as given;
  ``'knn'`` = P averaged with the given tags of each example's nearest neighbours in ``features``
  (:func:`knn_tag_votes`); ``'calibrated'``, ``'cooccurrence'``, ``'cooccurrence_knn'`` = cross-fitted
  per-tag logistic regressions stacked on the logits of P (:func:`stacked_probabilities`), the last two
  also on the example's *other* given tags (tag co-occurrence), the last also on the kNN votes.
* ``method='ensemble'`` (:func:`ensemble_label_issues`, needs ``features``): geometric mean of the
  'cooccurrence_knn' product score and the 'knn' min score (co-occurrence evidence hides a tag swapped
  for another that fits the remaining tags; the kNN score does not), flags by cleanlab's rule on the
  'cooccurrence_knn' probabilities. The reported label quality is that joint score's fourth root,
  computed in log space (:func:`readable_quality`): a strictly increasing map, so the ranking (and every
  rank metric of the benchmark) is the joint score's, but the worst examples no longer all read 0.000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

DEFAULT_METHOD = "ensemble"
DEFAULT_EMA_ALPHA = 0.8
#: How per-tag self-confidences become one example score for the per-tag flag methods. 'min' (the worst
#: tag) beat cleanlab's 'ema' in bench/results/quality.md (mean AUPRC 0.243 vs 0.218).
DEFAULT_POOLING = "min"
POOLINGS = ("min", "ema", "product")
METHODS = ("ensemble", "cleanlab", "confident_learning", "prune_by_noise_rate")
DEFAULT_SCORING = "self_confidence"
SCORINGS = ("self_confidence", "threshold_normalized")
DEFAULT_EVIDENCE = "model"
EVIDENCES = ("model", "knn", "calibrated", "cooccurrence", "cooccurrence_knn")
#: Evidence sources that need ``features``.
FEATURE_EVIDENCES = ("knn", "cooccurrence_knn")
DEFAULT_N_NEIGHBORS = 15
DEFAULT_KNN_WEIGHT = 0.5
DEFAULT_STACK_FOLDS = 5
TAG_ISSUE_COLUMNS = ["example_index", "tag_index", "given", "probability", "kind", "score"]
#: The 'ensemble' label quality is ``joint ** (1 / QUALITY_ROOT)`` (:func:`readable_quality`). The joint score is a
#: product over every tag, so it falls geometrically with the number of doubtful tags: on the bundled GoEmotions
#: sample (28 tags) the 15 worst joint scores lay between 5e-7 and 1e-5 and 113 examples below 0.0005, all
#: reading 0.000. The fourth root spreads them over 0.03-0.06 and keeps a clean example high (median 0.72).
QUALITY_ROOT = 4.0
#: Floor for a self-confidence before its logarithm: a probability rounded to exactly 0 or 1 would give
#: log(0) = -inf and tie every such example at quality 0.
_LOG_FLOOR = np.finfo(np.float64).tiny


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


def threshold_normalized_confidence(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(N, K) self-confidence relative to each tag's confident-learning threshold, in [0, 1].

    ``min(1, p / t1[k])`` where tag k is carried and ``min(1, (1 - p) / t0[k])`` where it is not
    (:func:`per_tag_thresholds`); 1 = at least as confident as a typical correct annotation of that tag,
    low = likely wrong.
    """
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    t1, t0 = per_tag_thresholds(Y, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(Y, P / np.maximum(t1, 1e-12), (1.0 - P) / np.maximum(t0, 1e-12))
    return np.clip(ratio, 0.0, 1.0)


def pool_scores(scores: np.ndarray, pooling: str = DEFAULT_POOLING, alpha: float = DEFAULT_EMA_ALPHA) -> np.ndarray:
    """Pool (N, K) per-tag scores in [0, 1] into (N,) example scores (low = likely wrong).

    'min' = the worst tag; 'ema' = :func:`ema_pool`; 'product' = product over tags (the chance that
    every tag is right if the scores are independent calibrated probabilities).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if pooling == "min":
        return scores.min(axis=1) if scores.shape[1] else np.ones(len(scores))
    if pooling == "ema":
        return ema_pool(scores, alpha) if scores.shape[1] else np.ones(len(scores))
    if pooling == "product":
        return np.prod(scores, axis=1)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def knn_tag_votes(features: np.ndarray, Y: np.ndarray, n_neighbors: int = DEFAULT_N_NEIGHBORS) -> np.ndarray:
    """(N, K) fraction of each example's ``n_neighbors`` nearest neighbours (cosine distance on
    ``features`` (N, D), the example itself excluded) that carry each tag."""
    from sklearn.neighbors import NearestNeighbors

    Y = np.asarray(Y, dtype=np.float64)
    n = len(Y)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return Y.copy()
    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(np.asarray(features, dtype=np.float64))
    idx = nn.kneighbors(return_distance=False)  # X=None: each point's neighbours without itself
    return Y[idx].mean(axis=1)


def knn_smoothed_probabilities(
    features: np.ndarray,
    Y: np.ndarray,
    P: np.ndarray,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    weight: float = DEFAULT_KNN_WEIGHT,
) -> np.ndarray:
    """(N, K) ``(1 - weight) * P + weight * knn_tag_votes(features, Y)``: the model's probabilities
    smoothed with the given tags of the nearest neighbours in embedding space."""
    votes = knn_tag_votes(features, Y, n_neighbors)
    return (1.0 - weight) * np.asarray(P, dtype=np.float64) + weight * votes


def _logit(P: np.ndarray) -> np.ndarray:
    Q = np.clip(np.asarray(P, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(Q) - np.log1p(-Q)


def stacked_probabilities(
    Y: np.ndarray,
    P: np.ndarray,
    use_other_tags: bool = True,
    extra: np.ndarray | None = None,
    n_folds: int = DEFAULT_STACK_FOLDS,
    seed: int = 0,
) -> np.ndarray:
    """Second-stage probabilities: for each tag k a cross-fitted logistic regression predicts the given
    tag from the standardised logits of all of P's columns, plus (``use_other_tags``) the example's
    *other* given tags (never tag k itself: co-occurrence evidence) and any ``extra`` (N, E) columns.

    Each example is predicted by models fitted on the other ``n_folds - 1`` folds (seeded ``KFold``), so
    its own given tags never inform its prediction; a tag constant within a training fold gets that
    fold's prevalence. Y: (N, K) 0/1; P: (N, K). Returns (N, K) float64 in [0, 1].
    """
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    Y = np.asarray(Y, dtype=bool)
    N, K = Y.shape
    out = np.zeros((N, K), dtype=np.float64)
    if N == 0 or K == 0:
        return out
    L = _logit(P)
    L = (L - L.mean(axis=0)) / np.maximum(L.std(axis=0), 1e-9)
    base = [L] if extra is None else [L, np.asarray(extra, dtype=np.float64)]
    Yf = Y.astype(np.float64)
    splits = list(KFold(min(n_folds, N), shuffle=True, random_state=seed).split(L)) if N >= 2 else []
    for k in range(K):
        F = np.hstack(base + ([np.delete(Yf, k, axis=1)] if use_other_tags else []))
        if not splits:
            out[:, k] = Yf[:, k]
            continue
        for train, test in splits:
            y = Y[train, k]
            if y.min() == y.max():
                out[test, k] = float(y[0])
                continue
            model = LogisticRegression(solver="newton-cholesky", max_iter=100)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(F[train], y)
            out[test, k] = model.predict_proba(F[test])[:, 1]
    return out


def evidence_probabilities(
    Y: np.ndarray,
    P: np.ndarray,
    evidence: str = DEFAULT_EVIDENCE,
    features: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(N, K) probabilities that scores and flags are computed from, by ``evidence`` (see module doc)."""
    if evidence not in EVIDENCES:
        raise ValueError(f"unknown evidence {evidence!r}; choose one of {EVIDENCES}")
    if evidence in FEATURE_EVIDENCES and features is None:
        raise ValueError(f"evidence {evidence!r} needs features (N, D)")
    P = np.asarray(P, dtype=np.float64)
    if evidence == "model":
        return P
    if evidence == "knn":
        return knn_smoothed_probabilities(features, Y, P)
    if evidence == "calibrated":
        return stacked_probabilities(Y, P, use_other_tags=False, seed=seed)
    if evidence == "cooccurrence":
        return stacked_probabilities(Y, P, use_other_tags=True, seed=seed)
    return stacked_probabilities(Y, P, use_other_tags=True, extra=knn_tag_votes(features, Y), seed=seed)


def ensemble_label_issues(Y: np.ndarray, P: np.ndarray, features: np.ndarray, seed: int = 0) -> DetectorResult:
    """Label issues from two evidence sources combined (:func:`combine_evidence` of the 'cooccurrence_knn'
    and 'knn' probabilities). Y, P: (N, K); features: (N, D)."""
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape:
        raise ValueError(f"tags {Y.shape} and probabilities {P.shape} differ in shape")
    votes = knn_tag_votes(features, Y)
    P_cooc = stacked_probabilities(Y, P, use_other_tags=True, extra=votes, seed=seed)
    P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes
    return combine_evidence(Y, P_cooc, P_knn)


def log_joint_score(S_cooc: np.ndarray, S_knn: np.ndarray) -> np.ndarray:
    """(N,) natural log of the ensemble's joint score ``sqrt(prod_k S_cooc[:, k] * min_k S_knn[:, k])``, summed
    in log space so that nothing underflows however many tags there are (each self-confidence floored at the
    smallest positive float64 first). 0 = every tag certainly right; more negative = more likely wrong."""
    S_cooc = np.clip(np.asarray(S_cooc, dtype=np.float64), _LOG_FLOOR, 1.0)
    S_knn = np.clip(np.asarray(S_knn, dtype=np.float64), _LOG_FLOOR, 1.0)
    if S_cooc.shape[1] == 0:
        return np.zeros(len(S_cooc))
    return 0.5 * (np.log(S_cooc).sum(axis=1) + np.log(S_knn.min(axis=1)))


def readable_quality(log_score: np.ndarray, root: float = QUALITY_ROOT) -> np.ndarray:
    """(N,) label quality in [0, 1] from a log joint score: ``exp(log_score / root)`` = the joint score's
    ``root``-th root. Strictly increasing, so the order of the joint scores is kept exactly; the result
    stays positive down to a log score of about -2,900 for root 4 (hundreds of confidently wrong tags)."""
    return np.clip(np.exp(np.asarray(log_score, dtype=np.float64) / root), 0.0, 1.0)


def combine_evidence(Y: np.ndarray, P_cooc: np.ndarray, P_knn: np.ndarray) -> DetectorResult:
    """The 'ensemble' detector from its two probability matrices (each (N, K)).

    ``scores`` (N,) = label quality in [0, 1], low = likely wrong: the fourth root (:data:`QUALITY_ROOT`,
    :func:`readable_quality`) of the joint score sqrt(product over tags of the self-confidence under
    ``P_cooc`` x min over tags of the self-confidence under ``P_knn``), computed in log space
    (:func:`log_joint_score`); it ranks examples exactly as the joint score does. ``flags`` / ``details`` =
    cleanlab's prune-by-noise-rate rule on ``P_cooc``. Per-tag scores: :func:`ensemble_tag_scores`.
    """
    from dq_pipeline.issues.cleanlab_parity import per_tag_issues

    Y = np.asarray(Y, dtype=bool)
    S_cooc = self_confidence(Y, P_cooc)
    S_knn = self_confidence(Y, P_knn)
    scores = readable_quality(log_joint_score(S_cooc, S_knn))
    tag_flags = per_tag_issues(Y, P_cooc)
    details = tag_issue_rows(Y, P_cooc, tag_flags)
    flags = tag_flags.any(axis=1)
    summary = {
        "method": "ensemble",
        "n_label_issues": int(flags.sum()),
        "n_tag_issues": int(len(details)),
        "n_missing": int((details["kind"] == "missing").sum()),
        "n_incorrect": int((details["kind"] == "incorrect").sum()),
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)


def ensemble_tag_scores(Y: np.ndarray, P_cooc: np.ndarray, P_knn: np.ndarray) -> np.ndarray:
    """(N, K) per-tag score of the 'ensemble' detector: geometric mean of the two self-confidences."""
    return np.sqrt(self_confidence(Y, P_cooc) * self_confidence(Y, P_knn))


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
    scoring: str = DEFAULT_SCORING,
    evidence: str = DEFAULT_EVIDENCE,
    features: np.ndarray | None = None,
    seed: int = 0,
) -> DetectorResult:
    """Detect label issues from given tags Y (N, K) 0/1 and out-of-fold probabilities P (N, K).

    Returns a :class:`DetectorResult`: ``scores`` = label quality in [0, 1] (low = likely wrong;
    per-tag scores pooled by ``pooling``: 'min' = worst tag, 'ema' = cleanlab's exponential
    moving average with ``alpha``, 'product' = product over tags), ``flags`` = example has at least one
    flagged tag, ``details`` = one row per flagged (example, tag) (:func:`tag_issue_rows`).

    ``method`` picks the detector ('ensemble' (default) = :func:`ensemble_label_issues`; 'cleanlab' =
    cleanlab 2.9's defaults exactly; or a per-tag flag rule: 'confident_learning' = :func:`confident_tag_flags`,
    'prune_by_noise_rate' = cleanlab's rule; 'ensemble' = :func:`ensemble_label_issues`, which ignores
    ``pooling``, ``scoring`` and ``evidence``); ``scoring`` the per-tag score ('self_confidence' or
    'threshold_normalized'); ``evidence`` the probabilities used instead of P ('model' = P itself; others
    in the module doc; 'knn' and 'cooccurrence_knn' need ``features`` (N, D); ``seed`` seeds the
    cross-fitting of the stacked ones). ``details`` report those probabilities.
    """
    if method not in METHODS:
        raise ValueError(f"unknown label-issue method {method!r}; choose one of {METHODS}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORINGS}")
    if method == "ensemble":
        if features is None:
            raise ValueError("method 'ensemble' needs features (N, D)")
        return ensemble_label_issues(Y, P, features, seed)
    if method == "cleanlab":
        from dq_pipeline.issues.cleanlab_parity import detect_parity

        return detect_parity(Y, P)
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape:
        raise ValueError(f"tags {Y.shape} and probabilities {P.shape} differ in shape")
    P = evidence_probabilities(Y, P, evidence, features, seed)
    if method == "confident_learning":
        tag_flags = confident_tag_flags(Y, P)
    else:
        from dq_pipeline.issues.cleanlab_parity import per_tag_issues

        tag_flags = per_tag_issues(Y, P)
    details = tag_issue_rows(Y, P, tag_flags)
    conf = self_confidence(Y, P) if scoring == "self_confidence" else threshold_normalized_confidence(Y, P)
    scores = np.clip(pool_scores(conf, pooling, alpha), 0.0, 1.0)
    flags = tag_flags.any(axis=1)
    summary = {
        "method": method,
        "pooling": pooling,
        "scoring": scoring,
        "evidence": evidence,
        "n_label_issues": int(flags.sum()),
        "n_tag_issues": int(len(details)),
        "n_missing": int((details["kind"] == "missing").sum()),
        "n_incorrect": int((details["kind"] == "incorrect").sum()),
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)
