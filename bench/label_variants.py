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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import ModuleType

import numpy as np

from dq_pipeline.issues.base import DetectorResult
from dq_pipeline.issues.label_issues import (
    DEFAULT_KNN_WEIGHT,
    knn_tag_votes,
    log_joint_score,
    self_confidence,
    stacked_probabilities,
    suggest,
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
    scores = exp_quality(log_joint_score(self_confidence(Y, P_cooc), self_confidence(Y, P_knn)))
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


def exp_quality(log_score: np.ndarray, root: float = 2.0) -> np.ndarray:
    """The label quality shown before the margin score (2026-12-07): ``exp(log_joint / root)``, in (0, 1]."""
    return np.clip(np.exp(np.asarray(log_score, dtype=np.float64) / root), 0.0, 1.0)


class JointScorer:
    """The default's ranking score until 2026-12-07: the log joint score of the given set itself
    (:func:`~dq_pipeline.issues.label_issues.log_joint_score` under the second stage and the kNN-blended
    probabilities) plus the rule penalty, not its margin over the best single change. Validation half
    (classifier C chosen per dataset): mean AUPRC on the verdict's noise 0.432 against 0.447 for the margin (2 tags
    tried); on similar_swap 0.369 vs 0.413, neighbour_swap 0.334 vs 0.364, missing 0.459 vs 0.479 (a swapped-in tag
    explains the swapped-out one away when the set is scored alone). Faster: 1.96x / 1.88x cleanlab's time on
    bench_label_speed's data against 2.56x / 3.16x for the margin at first (1.51x / 1.86x since its candidates run in
    float32)."""

    def __init__(self, model, P_knn: np.ndarray, rules) -> None:
        self.model, self.P_knn, self.rules = model, P_knn, rules

    def __call__(self, Y: np.ndarray, rows: np.ndarray | None = None, progress=None) -> np.ndarray:
        """As the default scorer's call (``progress`` is not reported: one pass)."""
        from dq_pipeline.issues.label_issues import VIOLATION_LOG_PENALTY
        from dq_pipeline.rules import violation_counts

        rows = np.arange(len(self.P_knn)) if rows is None else np.asarray(rows)
        Y = np.asarray(Y, dtype=bool)
        score = log_joint_score(self_confidence(Y, self.model.probabilities(Y, rows)),
                                self_confidence(Y, self.P_knn[rows]))
        if self.rules is not None and self.rules.n_rules:
            score = score + VIOLATION_LOG_PENALTY * violation_counts(self.rules, Y)
        return score


def joint_default(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The default as it was before the margin score (for ``--candidate joint=bench.label_variants:joint_default``):
    the same detector with :class:`JointScorer` and :func:`exp_quality`."""
    with _patched("_Scorer", JointScorer), _patched("readable_quality", exp_quality) as li:
        return li.find_label_issues(Y, P, features=features, seed=seed)


def previous_default(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The default before issue 10 (for ``bench_quality.py --candidate before=bench.label_variants:previous_default``):
    the same joint score, flags and suggestions by cleanlab's prune-by-noise-rate rule on the stacked
    probabilities."""
    return variant_label_issues(Y, P, method="ensemble_cleanlab_flags", features=features, seed=seed)


#: The mixture estimate (c93b9ed, reverted): EM on ``u = log(-log_score + MIXTURE_OFFSET)``, clean ~ normal,
#: wrong ~ the planted-error scores (a kernel density); the bootstrap median is the rate. Better calibrated on
#: the validation half (flagged/true 2.00/1.38/0.82 vs 2.93/1.95/1.07 at 5/10/20%) but it collapses when many
#: rows are wrong (bench/bench_error_rate_seeded.py) and was dropped.
MIXTURE_OFFSET = 0.01
MIXTURE_MAX_ITER = 300
MIXTURE_TOL = 1e-6
MIXTURE_MAX_POINTS = 20000
MIXTURE_N_BOOTSTRAP = 100


def _planted_density(v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density (Scott's bandwidth) of the values ``v`` evaluated at ``grid``."""
    h = max(float(np.std(v)) * len(v) ** -0.2, 1e-3)
    z = (grid[:, None] - v[None, :]) / h
    return np.exp(-0.5 * z * z).sum(axis=1) / (len(v) * h * np.sqrt(2.0 * np.pi))


def _mixture_weight(u: np.ndarray, f1: np.ndarray) -> float:
    """EM for the weight ``pi`` of the error component in ``(1 - pi) * Normal(m, s) + pi * f1`` over ``u``
    (f1: the error density at each u, fixed; m, s refitted to the clean-weighted points)."""
    pi, w0 = 0.2, np.ones_like(u)
    for _ in range(MIXTURE_MAX_ITER):
        m = np.average(u, weights=w0)
        s = max(float(np.sqrt(np.average((u - m) ** 2, weights=w0))), 1e-6)
        f0 = np.exp(-0.5 * ((u - m) / s) ** 2) / (s * np.sqrt(2.0 * np.pi))
        a, b = (1.0 - pi) * f0, pi * f1
        resp = b / np.maximum(a + b, 1e-300)
        new = float(resp.mean())
        w0 = np.maximum(1.0 - resp, 1e-12)
        if abs(new - pi) < MIXTURE_TOL:
            return new
        pi = new
    return pi


def mixture_error_rate(observed: np.ndarray, planted: np.ndarray, seed: int = 0,
                        n_bootstrap: int = MIXTURE_N_BOOTSTRAP) -> tuple[float, tuple[float, float]]:
    """Share of examples with a wrong tag from log scores (<= 0, low = likely wrong) of the examples as given
    (``observed``, (N,)) and of planted errors (``planted``, (M,)); returns ``(rate, (lo, hi))``.

    On ``u = log(-score + MIXTURE_OFFSET)`` the observed scores are fitted (EM) as a mixture of a normal
    distribution (the clean examples) and the planted-error distribution (a kernel density): the rate is the
    error component's weight, the median over :data:`MIXTURE_N_BOOTSTRAP` bootstrap resamples of the examples, with
    their 90% quantiles as the interval. It reads high where clean examples' scores have a heavy
    low tail the normal cannot fit (a weak model), and low where real errors score better than planted ones."""
    observed = np.asarray(observed, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    if len(observed) < 2 or len(planted) < 2:
        return 0.0, (0.0, 0.0)
    rng = np.random.default_rng(seed)
    u = np.log(np.maximum(-observed, 0.0) + MIXTURE_OFFSET)
    v = np.log(np.maximum(-planted, 0.0) + MIXTURE_OFFSET)
    if len(v) > MIXTURE_MAX_POINTS // 4:
        v = rng.choice(v, MIXTURE_MAX_POINTS // 4, replace=False)
    grid = np.linspace(min(u.min(), v.min()) - 1.0, max(u.max(), v.max()) + 1.0, 512)
    f1 = np.interp(u, grid, _planted_density(v, grid))
    n = min(len(u), MIXTURE_MAX_POINTS)
    boots = []
    for _ in range(max(n_bootstrap, 1)):
        i = rng.integers(0, len(u), n)
        boots.append(_mixture_weight(u[i], f1[i]))
    point = float(np.clip(np.median(boots), 0.0, 1.0))
    lo, hi = np.quantile(boots, (0.05, 0.95))
    return point, (float(min(lo, point)), float(max(hi, point)))


def mixture_rate_candidate(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None,
                           seed: int = 0) -> DetectorResult:
    """The shipped detector with the dropped mixture estimate :func:`mixture_error_rate` (for
    ``bench_quality.py --candidate mixture=bench.label_variants:mixture_rate_candidate``)."""
    with _patched("estimate_error_rate", mixture_error_rate) as li:
        return li.find_label_issues(Y, P, features=features, seed=seed)


@contextmanager
def _patched(attribute: str, value: object) -> Iterator[ModuleType]:
    """``dq_pipeline.issues.label_issues`` with one module attribute replaced for the duration (yields the module)."""
    from dq_pipeline.issues import label_issues as li

    before = getattr(li, attribute)
    setattr(li, attribute, value)
    try:
        yield li
    finally:
        setattr(li, attribute, before)


# --- issue 11: the default detector as it was before the speed work (for
# ``bench_quality.py --candidate before=bench.label_variants:issue10_default``). Copied verbatim from
# dq_pipeline/issues/label_issues.py at 4c35713: the second stage fitted on every training row of each fold, the
# bootstrap sorting each resample, suggestions in a loop over flagged rows.

def issue10_fit_stacked(Y: np.ndarray, P: np.ndarray, extra: np.ndarray | None = None, use_other_tags: bool = True,
                        n_folds: int = 5, seed: int = 0):
    """The second stage before issue 11: per tag and fold a LogisticRegression on all the fold's training rows."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits

    from dq_pipeline.issues.label_issues import StackedModel, _logit

    Y = np.asarray(Y, dtype=bool)
    N, K = Y.shape
    n_f = max(1, min(n_folds, N))
    fold = np.zeros(N, dtype=np.int64)
    W = np.zeros((n_f, K, K), dtype=np.float64)
    base = np.zeros((N, K), dtype=np.float64)
    if N == 0 or K == 0:
        return StackedModel(base, W, fold)
    L = _logit(P)
    L = (L - L.mean(axis=0)) / np.maximum(L.std(axis=0), 1e-9)
    base_X = L if extra is None else np.hstack([L, np.asarray(extra, dtype=np.float64)])
    Yf = Y.astype(np.float64)
    if N < 2:
        return StackedModel(_logit(Yf), W, fold)
    splits = list(KFold(n_f, shuffle=True, random_state=seed).split(L))
    for f, (_, test) in enumerate(splits):
        fold[test] = f
    n_base = base_X.shape[1]
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(K):
            others = np.delete(np.arange(K), k)
            F = np.hstack([base_X, Yf[:, others]]) if use_other_tags else base_X
            for f, (train, test) in enumerate(splits):
                y = Y[train, k]
                if y.min() == y.max():
                    base[test, k] = _logit(np.array([float(y[0])]))[0]
                else:
                    model = LogisticRegression(solver="newton-cholesky", max_iter=100)
                    model.fit(F[train], y)
                    coef = model.coef_[0]
                    base[test, k] = base_X[test] @ coef[:n_base] + model.intercept_[0]
                    if use_other_tags:
                        W[f, k, others] = coef[n_base:]
    return StackedModel(base, W, fold)


def issue10_estimate_error_rate(observed: np.ndarray, planted: np.ndarray, seed: int = 0,
                                n_bootstrap: int = 200) -> tuple[float, tuple[float, float]]:
    """The estimate before issue 11 (each bootstrap resample sorted)."""
    from dq_pipeline.issues.label_issues import ESTIMATE_QUANTILE, INTERVAL

    observed = np.asarray(observed, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    if len(observed) == 0 or len(planted) == 0:
        return 0.0, (0.0, 0.0)

    def rate(obs: np.ndarray, pl: np.ndarray) -> float:
        t = np.quantile(pl, ESTIMATE_QUANTILE)
        f1 = np.searchsorted(np.sort(pl), t, side="right") / len(pl)
        g = np.searchsorted(np.sort(obs), t, side="right") / len(obs)
        return float(np.clip(g / max(f1, 1e-12), 0.0, 1.0))

    point = rate(observed, planted)
    rng = np.random.default_rng(seed)
    boots = [rate(observed[rng.integers(0, len(observed), len(observed))],
                  planted[rng.integers(0, len(planted), len(planted))]) for _ in range(n_bootstrap)]
    lo, hi = np.quantile(boots, INTERVAL) if boots else (point, point)
    return point, (float(min(lo, point)), float(max(hi, point)))


def issue10_suggest(Y: np.ndarray, rows: np.ndarray, model, P_knn: np.ndarray, rules, P_tags: np.ndarray,
                    edit_cost: float = 1.0) -> np.ndarray:
    """Suggestions before issue 11: a Python loop over the flagged rows (the reference the vectorised
    :func:`dq_pipeline.issues.label_issues.suggest` is tested against)."""
    from dq_pipeline.issues.label_issues import _candidates, _soft_log, self_confidence
    from dq_pipeline.rules import repair, violation_counts

    Y = np.asarray(Y, dtype=bool)
    S = Y.copy()
    group_of = rules.group_of() if rules is not None else np.full(Y.shape[1], -1)
    has_rules = rules is not None and rules.n_rules > 0
    for i in np.asarray(rows, dtype=np.int64):
        y = Y[i]
        cand = _candidates(y, group_of)
        violating = has_rules and bool(violation_counts(rules, y[None, :])[0])
        if violating:
            cand = np.vstack([cand, repair(rules, y, P_tags[i])[None, :]])
        if has_rules:
            cand = cand[violation_counts(rules, cand) == 0]
        if not violating:
            cand = np.vstack([y[None, :], cand])
        if len(cand) == 0:
            continue
        at = np.full(len(cand), i)
        objective = 0.5 * (_soft_log(self_confidence(cand, model.probabilities(cand, at))).sum(axis=1)
                           + _soft_log(self_confidence(cand, P_knn[at])).sum(axis=1))
        objective -= edit_cost * (cand != y).any(axis=1)
        S[i] = cand[int(np.argmax(objective))]
    return S


def _flags_by_estimate(rank: np.ndarray, rank_planted: np.ndarray, violating: np.ndarray, estimate: Callable,
                       seed: int) -> tuple[np.ndarray, dict]:
    """The default's flag rule on any ranking (low = likely wrong): the ``estimate(observed, planted, seed=)``
    share of the rule-abiding examples, lowest ``rank`` first, plus every rule breaker. Returns (flags (N,),
    the summary's ``expected_error_rate`` / ``_interval`` / ``n_rule_violations``)."""
    N = len(rank)
    rate, (lo, hi) = estimate(rank[~violating], rank_planted, seed=seed)
    n_clean_side, n_viol = int((~violating).sum()), int(violating.sum())
    order = np.lexsort((np.arange(N), rank))
    flags = np.zeros(N, dtype=bool)
    flags[order[: min(int(round(rate * n_clean_side)) + n_viol, N)]] = True
    flags |= violating
    share = (lambda r: float((n_viol + r * n_clean_side) / N)) if N else (lambda r: 0.0)
    return flags, {"expected_error_rate": share(rate), "expected_error_rate_interval": [share(lo), share(hi)],
                   "n_rule_violations": n_viol}


def issue10_default(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The default ``find_label_issues`` before issue 11 (same evidence, score, estimate, flags, suggestions and
    summary; the slow full-data second stage, sorted bootstrap and suggestion loop)."""
    from dq_pipeline.issues.label_issues import (
        _Scorer,
        knn_tag_votes,
        plant_errors,
        quality_root,
        readable_quality,
        tag_issue_rows,
    )
    from dq_pipeline.rules import learn_label_rules, violation_counts

    Y = np.asarray(Y).astype(bool)
    P = np.asarray(P, dtype=np.float64)
    N, K = Y.shape
    rules = learn_label_rules(Y)
    if features is not None and N > 1:
        votes = knn_tag_votes(features, Y)
        P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes
    else:
        votes, P_knn = None, P
    model = issue10_fit_stacked(Y, P, extra=votes, seed=seed)
    scorer = _Scorer(model, P_knn, rules)
    P_cooc = model.probabilities(Y)
    log_score = scorer(Y)
    violating = violation_counts(rules, Y) > 0 if rules.n_rules else np.zeros(N, dtype=bool)
    Y_planted, planted = plant_errors(Y, rules, seed=seed)
    ok = planted & ~violating
    planted_score = scorer(Y_planted[ok], np.flatnonzero(ok))
    flags, estimated = _flags_by_estimate(log_score, planted_score, violating, issue10_estimate_error_rate, seed)
    S = issue10_suggest(Y, np.flatnonzero(flags), model, P_knn, rules, 0.5 * (P_cooc + P_knn))
    details = tag_issue_rows(Y, P_cooc, S != Y)
    summary = {"method": "issue10_default", "n_label_issues": int(flags.sum()), "n_tag_issues": int(len(details)),
               **estimated}
    return DetectorResult(scores=readable_quality(log_score, quality_root(K)), flags=flags, summary=summary,
                          details=details)


def newton_everywhere(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The shipped default with its second stage on the batched Newton path at every size (``STACK_MAX_ROWS`` =
    100 instead of 4,000): shows on the (small) benchmark datasets what that path does to quality, which the
    default only takes above 4,000 training rows per fold (``bench_quality.py --candidate
    newton=bench.label_variants:newton_everywhere``)."""
    from dq_pipeline.issues import label_issues as li

    shipped = li.STACK_MAX_ROWS
    li.STACK_MAX_ROWS = 100
    try:
        return li.find_label_issues(Y, P, features=features, seed=seed)
    finally:
        li.STACK_MAX_ROWS = shipped


def graph_votes(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The shipped default with its kNN votes read from the audit's shared neighbour graph in the audit's metric:
    euclidean for tabular features (standardised, not unit rows), cosine for embeddings (unit rows) — what the
    ``label_issues`` asset does since issue 11 (the default's ``features=`` path searches cosine on every
    modality). ``bench_quality.py --candidate graph=bench.label_variants:graph_votes``."""
    from dq_pipeline.issues.label_issues import find_label_issues
    from dq_pipeline.neighbours import build_neighbour_graph

    if features is None or len(Y) < 2:
        return find_label_issues(Y, P, features=features, seed=seed)
    X = np.asarray(features, dtype=np.float64)
    unit = np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-3)
    graph = build_neighbour_graph(X, k=15, metric="cosine" if unit else "euclidean", seed=seed)
    return find_label_issues(Y, P, neighbours=graph.indices, seed=seed)


def group_normalized(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
    """The default detector on P renormalised inside each learned one-of-N group (``P[:, g] / P[:, g].sum(1)``):
    the classifier's independent sigmoids made a distribution over the group's members, as its rule says exactly
    one is carried. Tags outside groups unchanged. Lost on the validation half (2026-12-07, classifier at C = 0.03):
    AUPRC 0.431 = the default's, exact-match on corrupted 0.248 vs 0.254, flag F1 @ 0.10 0.406 vs 0.409
    (``bench_quality.py --split validation --candidate group=bench.label_variants:group_normalized``)."""
    from dq_pipeline.issues.label_issues import find_label_issues
    from dq_pipeline.rules import learn_label_rules

    rules = learn_label_rules(np.asarray(Y).astype(bool))
    P = np.array(P, dtype=np.float64)
    for g in rules.groups:
        g = list(g)
        P[:, g] = np.clip(P[:, g] / np.maximum(P[:, g].sum(axis=1, keepdims=True), 1e-12), 1e-6, 1 - 1e-6)
    return find_label_issues(Y, P, features=features, seed=seed, rules=rules)


def _with_setting(attribute: str, value: object):
    """The default detector with one ``label_issues`` module setting replaced (for ``--candidate``)."""

    def detect(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
        with _patched(attribute, value) as li:
            return li.find_label_issues(Y, P, features=features, seed=seed)

    return detect


# The error-rate estimate's threshold at quantile q of the planted scores. Validation half, 2026-12-07 (classifier at
# C = 0.03), flagged / true at 5 / 10 / 20%: q 0.05 2.03 / 1.49 / 0.75 (flag F1 @ 0.10 0.339), q 0.10 2.54 / 1.62 / 0.97
# (0.391), default 0.20 2.97 / 1.78 / 1.10 (0.409), q 0.30 3.45 / 2.03 / 1.20 (0.414): the quantile shifts every
# rate alike, the slope stays; none meets the bar.
estimate_q05 = _with_setting("ESTIMATE_QUANTILE", 0.05)
estimate_q10 = _with_setting("ESTIMATE_QUANTILE", 0.10)
estimate_q30 = _with_setting("ESTIMATE_QUANTILE", 0.30)
# The kNN votes' weight w in P_knn = (1 - w) P + w votes, re-checked after the classifier's C became 0.03
# (2026-12-07, validation): mean AUPRC w 0.25 0.428, default 0.5 0.431, w 0.75 0.429; flag F1 @ 0.10 0.407 / 0.409 /
# 0.409: the default stays.
knn_weight_025 = _with_setting("DEFAULT_KNN_WEIGHT", 0.25)
knn_weight_075 = _with_setting("DEFAULT_KNN_WEIGHT", 0.75)
# The suggestions' cost of a change (``suggest``'s edit_cost; its default is bound, so ``suggest`` itself is
# replaced). Validation, 2026-12-07 (C = 0.03): exact-match on corrupted / clean kept 0.307 / 0.863 at cost 0.5,
# 0.301 / 0.867 at the default 1.0, 0.254 / 0.897 at 2.0 (flags unchanged): a trade-off, the default stays.
edit_cost_05 = _with_setting("suggest", partial(suggest, edit_cost=0.5))
edit_cost_20 = _with_setting("suggest", partial(suggest, edit_cost=2.0))


def _blend_cleanlab(weight: float):
    """Exploration only: the default's flags and suggestions, its score rank-averaged with cleanlab's multi-label
    score on the same P (``weight`` = cleanlab's share). The flags are then not the top of this ranking. Lost on the
    validation half (2026-12-07, C = 0.03): mean AUPRC 0.418 (weight 0.25) and 0.398 (0.5) vs 0.431; better only
    on scene (0.576 vs 0.562)."""

    def detect(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0) -> DetectorResult:
        from scipy.stats import rankdata

        from dq_pipeline.issues.cleanlab_parity import detect_parity
        from dq_pipeline.issues.label_issues import find_label_issues

        ours = find_label_issues(Y, P, features=features, seed=seed)
        cl = detect_parity(np.asarray(Y).astype(bool), P)
        n = len(ours.scores)
        r = ((1 - weight) * rankdata(ours.scores) + weight * rankdata(cl.scores)) / n
        return DetectorResult(scores=np.clip(r, 0, 1), flags=ours.flags, summary=ours.summary, details=ours.details)

    return detect


blend_cleanlab_025 = _blend_cleanlab(0.25)
blend_cleanlab_050 = _blend_cleanlab(0.5)


def _margin_suggest(edit_cost: float):
    """Exploration: suggestions from the ranking's own alternatives. A flagged example gets the best valid set one
    change away (:func:`alternative_margins`' candidates: a carried tag dropped, one of the likeliest absent tags
    added or swapped in) when its log joint score beats the given set's by more than ``edit_cost``, else keeps its
    tags; examples breaking a rule keep the default's answer (its repair).

    Validation half, 2026-12-07 (`bench_quality.py --split validation --workers 2 --no-e2e --candidate
    ms0=bench.label_variants:margin_suggest_0 ...`; flags unchanged): exact-match on corrupted / clean kept 0.316 /
    0.883 at cost 0 and 0.5, 0.299 / 0.890 at cost 1, against the default's 0.305 / 0.885 (better on 5 of 6 datasets,
    scene-single 0.624 -> 0.664; tmdb 0.202 -> 0.198). Not shipped: +0.011 against a bar of 0.5, for a second
    suggestion path beside the repair of rule breakers."""

    def margin_suggest(Y: np.ndarray, rows: np.ndarray, model, P_knn: np.ndarray, rules, P_tags: np.ndarray,
                       progress=None) -> np.ndarray:
        from dq_pipeline.issues import label_issues as li
        from dq_pipeline.rules import violation_counts

        S = _ORIGINAL_SUGGEST(Y, rows, model, P_knn, rules, P_tags)
        Y = np.asarray(Y, dtype=bool)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return S
        has_rules = rules is not None and rules.n_rules > 0
        if has_rules:
            rows = rows[violation_counts(rules, Y[rows]) == 0]
        y = Y[rows]

        def objective(sets: np.ndarray, at: np.ndarray) -> np.ndarray:
            return li.log_joint_score(li.self_confidence(sets, model.probabilities(sets, at)),
                                      li.self_confidence(sets, P_knn[at]))

        given = objective(y, rows)
        cand, owner, _, _ = li._single_changes(y, *li._likely_absent(y, P_knn[rows], li.MARGIN_ADD_CANDIDATES))
        if has_rules and len(cand):
            keep = violation_counts(rules, cand) == 0
            cand, owner = cand[keep], owner[keep]
        if len(cand) == 0:
            return S
        obj = objective(cand, rows[owner])
        order = np.lexsort((-obj, owner))  # per row, best first
        first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
        better = obj[first] > given[owner[first]] + edit_cost
        S[rows] = Y[rows]
        S[rows[owner[first][better]]] = cand[first][better]
        return S

    return _with_setting("suggest", margin_suggest)


from dq_pipeline.issues.label_issues import suggest as _ORIGINAL_SUGGEST  # noqa: E402

margin_suggest_0 = _margin_suggest(0.0)
margin_suggest_05 = _margin_suggest(0.5)
margin_suggest_1 = _margin_suggest(1.0)


# --------------------------------------------------------------------------------------------------
# self-selected ranking: ours or cleanlab's score, whichever separates the detector's own planted errors better


def _planted_auroc(observed: np.ndarray, planted: np.ndarray) -> float:
    """AUROC of telling planted rows (low score = error) from the observed rows."""
    from scipy.stats import rankdata

    s = np.concatenate([observed, planted])
    r = rankdata(-s)
    n1, n0 = len(planted), len(observed)
    return float((r[n0:].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else float("nan")


def self_selected(Y: np.ndarray, P: np.ndarray, features: np.ndarray | None = None, seed: int = 0,
                  margin: float = 0.0) -> DetectorResult:
    """find_label_issues, except that the ranking (and the error-rate estimate on it) is cleanlab's label quality
    score on P where that separates the detector's own planted errors from the observed rows better (planted AUROC
    above ours + ``margin``); the suggestions are ours either way. ``summary['ranking']`` says which."""
    from dq_pipeline.issues import label_issues as li
    from dq_pipeline.issues.cleanlab_parity import label_quality_scores
    from dq_pipeline.rules import learn_label_rules, violation_counts

    Y = np.asarray(Y).astype(bool)
    P = np.asarray(P, dtype=np.float64)
    N, K = Y.shape
    rules = learn_label_rules(Y)
    votes = knn_tag_votes(features, Y) if features is not None and N > 1 else None
    P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes if votes is not None else P
    model = li.fit_stacked(Y, P, extra=votes, seed=seed, max_rows=li.STACK_MAX_ROWS)
    scorer = li._Scorer(model, P_knn, rules)
    P_cooc = model.probabilities(Y)
    log_score = scorer(Y)
    violating = violation_counts(rules, Y) > 0 if rules.n_rules else np.zeros(N, dtype=bool)
    Y_planted, planted = li.plant_errors(Y, rules, seed=seed)
    ok = np.flatnonzero(planted & ~violating)
    if len(ok) > li.PLANTED_MAX_ROWS:
        ok = np.sort(np.random.default_rng(seed).choice(ok, li.PLANTED_MAX_ROWS, replace=False))
    planted_score = scorer(Y_planted[ok], ok)
    cl = np.log(np.clip(label_quality_scores(Y, P), 1e-300, None))
    cl_planted = np.log(np.clip(label_quality_scores(Y_planted[ok], P[ok]), 1e-300, None))
    auc_ours = _planted_auroc(log_score[~violating], planted_score)
    auc_cl = _planted_auroc(cl[~violating], cl_planted)
    use_cl = bool(auc_cl > auc_ours + margin)
    rank, rank_planted = (cl, cl_planted) if use_cl else (log_score, planted_score)
    flags, estimated = _flags_by_estimate(rank, rank_planted, violating, li.estimate_error_rate, seed)
    S = suggest(Y, np.flatnonzero(flags), model, P_knn, rules, 0.5 * (P_cooc + P_knn))
    details = tag_issue_rows(Y, P_cooc, S != Y)
    summary = {**estimated, "ranking": "cleanlab" if use_cl else "ours", "planted_auroc": [auc_ours, auc_cl]}
    scores = np.exp(cl) if use_cl else li.readable_quality(log_score, li.quality_root(K))
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)


self_selected_005 = partial(self_selected, margin=0.05)
