"""Label issues: which examples carry wrong tags, how many there are, and what the tags should be.

One detector, :func:`find_label_issues`, one return type (:class:`~dq_pipeline.issues.base.DetectorResult`).
From given tags Y (N, K), out-of-fold probabilities P (N, K) and the features X (N, D) behind P:

1. **Evidence.** ``P_knn = (P + votes) / 2``, where ``votes`` (N, K) is the share of each example's 15
   nearest neighbours (cosine on X, itself excluded) carrying each tag (:func:`knn_tag_votes`); and a
   second stage (:func:`fit_stacked`): per tag a cross-fitted logistic regression predicting the given tag
   from the standardised logits of P, the kNN votes and the example's *other* given tags (co-occurrence).
   Each example is predicted by models fitted on the other folds, so its own tags never inform it; because
   the model is linear in the other tags, any *hypothetical* tag set of an example can be scored without a
   refit (:class:`StackedModel`).
2. **Score** (ranking; low = likely wrong): ``log_joint = 0.5 * (sum_k log s_cooc_k + min_k log s_knn_k)``
   with ``s`` the self-confidence of each given tag state (``p`` if carried else ``1 - p``) under the stacked
   and the kNN probabilities, each softly floored (``(s + 1e-3) / (1 + 1e-3)``: no ``-inf``, no ties), minus
   :data:`VIOLATION_LOG_PENALTY` per learned rule the tag set breaks (:mod:`dq_pipeline.rules`). The
   reported label quality is ``exp(log_joint / 2)`` (:func:`readable_quality`): strictly increasing, in
   (0, 1], readable (no 1e-78 on tiny datasets).
3. **How many are wrong** (:func:`estimate_error_rate`): every example gets one *planted* corruption that
   keeps the learned rules (drop a tag, add a tag, or swap one for another; inside a one-of-N group a swap
   stays in the group, a swap prefers a tag with a similar co-occurrence profile) and the planted tag sets are
   scored by the same model. With ``G`` the distribution of the observed scores and ``F1`` that of planted
   errors, the share of wrong examples is estimated as ``G(t) / F1(t)`` at the 20th percentile t of the
   planted scores (mixture-proportion estimation: clean examples scoring that low only add to ``G``, so it
   over-estimates where the model is weak). The interval is a bootstrap over examples.
4. **Flags** = the ``round(rate x N)`` lowest-scoring examples (the top of the ranking), plus any example
   whose given tags break a learned rule (those rank first anyway unless the penalty is outweighed; they are
   counted in ``summary['n_flagged_outside_prefix']``).
5. **Suggestions** for flagged examples: the best tag set among the given one, the given one with one tag
   flipped, and with one carried tag swapped for an absent one, keeping only sets that satisfy the learned
   rules (never empty where the data never is; inside a one-of-N group a swap, never a second member), by
   the summed log self-confidences under both evidence sources minus :data:`SUGGEST_EDIT_COST` for a change
   (a swap is one change); a violating example gets the best valid set, or :func:`dq_pipeline.rules.repair` of its given set.
   ``details`` holds one row per changed (example, tag): swap = one 'incorrect' + one 'missing' row; a
   flagged example whose given set wins keeps its tags (no rows; ``n_flagged_without_suggestion``).

``method='cleanlab'`` is the documented parity mode: cleanlab 2.9's multi-label defaults exactly
(:mod:`dq_pipeline.issues.cleanlab_parity`). Variants that lost in the benchmarks live in
``bench/label_variants.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

if TYPE_CHECKING:
    from dq_pipeline.neighbours import NeighbourGraph

DEFAULT_METHOD = "ensemble"
METHODS = ("ensemble", "cleanlab")
DEFAULT_N_NEIGHBORS = 15
DEFAULT_KNN_WEIGHT = 0.5
DEFAULT_STACK_FOLDS = 5
TAG_ISSUE_COLUMNS = ["example_index", "tag_index", "given", "probability", "kind", "score"]
#: Label quality = ``exp(log_joint / QUALITY_ROOT)``: the joint score's square root. On the bundled GoEmotions
#: sample the 15 worst then read 0.0073-0.015, distinct at 3 significant digits (the 4th root packed them
#: into 0.086-0.122, where two read alike); a clean example reads about 0.5-0.9.
QUALITY_ROOT = 2.0
#: Soft floor of each self-confidence before its logarithm: ``log((s + eps) / (1 + eps))`` is finite,
#: strictly increasing, and a confidently wrong tag costs at most log(1e-3) = -6.9 (no 1e-78 qualities).
SOFT_FLOOR = 1e-3
#: Added to the log joint score per learned rule an example's tag set breaks (about three wrong tags).
VIOLATION_LOG_PENALTY = -4.6
#: The threshold t of the estimate ``G(t) / F1(t)``: this quantile of the planted-error scores. Chosen on the
#: validation half of bench/bench_quality.py among 0.1, 0.2, 0.3, 0.5 and the minimum over 0.1-0.5 (closest
#: flagged/true ratios on average; see bench/results/quality_validation.md).
ESTIMATE_QUANTILE = 0.2
#: Bootstrap resamples for the expected-error-rate interval (90%).
N_BOOTSTRAP = 200
INTERVAL = (0.05, 0.95)
#: Planted swaps prefer confusable tags: weight ~ exp(cosine of co-occurrence profiles / SWAP_TEMPERATURE).
SWAP_TEMPERATURE = 0.1
#: Suggestions maximise ``0.5 * (sum_k log s_cooc + sum_k log s_knn) - SUGGEST_EDIT_COST * (any change)`` over
#: the given set and its valid one-flip / one-swap changes (a swap is one edit). Validation half (46 runs of
#: plausible noise): exact-match on corrupted 0.265, clean kept 0.829; the ranking score itself as objective
#: 0.252 / 0.826; the stacked evidence alone 0.239 / 0.827; cost 2.0: 0.254 / 0.856; a cost per changed tag
#: (a swap = 2): 0.271 / 0.844 but 0.266 instead of 0.301 on one-of-N group swaps.
SUGGEST_EDIT_COST = 1.0


def self_confidence(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(N, K) probability the model gives to the *given* state of each tag: p if carried, else 1 - p.

    High = the given state agrees with the model; low = likely wrong.
    """
    Y = np.asarray(Y, dtype=bool)
    P = np.asarray(P, dtype=np.float64)
    return np.where(Y, P, 1.0 - P)


def knn_tag_votes(features: np.ndarray | None, Y: np.ndarray, n_neighbors: int = DEFAULT_N_NEIGHBORS,
                  graph: NeighbourGraph | None = None) -> np.ndarray:
    """(N, K) fraction of each example's ``n_neighbors`` nearest neighbours (cosine distance on
    ``features`` (N, D), the example itself excluded) that carry each tag.

    Neighbours from ``graph`` (the audit's shared :class:`~dq_pipeline.neighbours.NeighbourGraph`; its own
    metric, at least ``n_neighbors`` neighbours; ``features`` may then be None) when given, else from a cosine
    graph built here (:func:`~dq_pipeline.neighbours.build_neighbour_graph`, ``method="auto"``)."""
    from dq_pipeline.neighbours import build_neighbour_graph

    Y = np.asarray(Y, dtype=np.float64)
    n = len(Y)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return Y.copy()
    if graph is None:
        graph = build_neighbour_graph(features, k=k, metric="cosine")
    if len(graph) != n or graph.k < k:
        raise ValueError(f"the neighbour graph has {len(graph)} rows x {graph.k} neighbours; need {n} x {k}")
    return Y[graph.indices[:, :k]].mean(axis=1)


def _logit(P: np.ndarray) -> np.ndarray:
    Q = np.clip(np.asarray(P, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(Q) - np.log1p(-Q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class StackedModel:
    """Cross-fitted second stage, linear in the other given tags.

    ``base`` (N, K): each example's logit for each tag from P's logits and the extra columns (its own fold's
    model); ``W`` (F, K, K): per fold, the weight of tag j's given state in tag k's logit (zero diagonal);
    ``fold`` (N,): each example's fold. The probability of tag k for example i with tag set y is
    ``sigmoid(base[i, k] + W[fold[i], k] @ y)``.
    """

    base: np.ndarray
    W: np.ndarray
    fold: np.ndarray

    def logits(self, Y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(n, K) logits of tag sets ``Y`` (n, K) for examples ``rows`` (default: all, in order)."""
        rows = np.arange(len(self.base)) if rows is None else np.asarray(rows)
        Yf = np.asarray(Y, dtype=np.float64)
        out = self.base[rows].copy()
        folds = self.fold[rows]
        for f in np.unique(folds):
            sel = folds == f
            out[sel] += Yf[sel] @ self.W[f].T
        return out

    def probabilities(self, Y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return _sigmoid(self.logits(Y, rows))


def fit_stacked(Y: np.ndarray, P: np.ndarray, extra: np.ndarray | None = None, use_other_tags: bool = True,
                n_folds: int = DEFAULT_STACK_FOLDS, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> StackedModel:
    """Fit the second stage: for each tag k and fold, a logistic regression of the given tag on the
    standardised logits of P (N, K), ``extra`` (N, E) and (``use_other_tags``) the other given tags, fitted
    on the other folds (seeded ``KFold``). A tag constant within a training fold gets that fold's state.

    The K x folds small fits run with BLAS limited to one thread: with several threads they collapse under
    contention (issue 11: 10k rows, 2.4 s with one thread, 23-34 s with two). ``progress(done, total)``
    is called after each of the K x folds fits.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits

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
                if progress is not None:
                    progress(k * len(splits) + f + 1, K * len(splits))
    return StackedModel(base, W, fold)


def stacked_probabilities(Y: np.ndarray, P: np.ndarray, use_other_tags: bool = True,
                          extra: np.ndarray | None = None, n_folds: int = DEFAULT_STACK_FOLDS,
                          seed: int = 0) -> np.ndarray:
    """(N, K) second-stage probabilities of the given tags (:func:`fit_stacked` evaluated on Y itself)."""
    return fit_stacked(Y, P, extra, use_other_tags, n_folds, seed).probabilities(Y)


def _soft_log(S: np.ndarray) -> np.ndarray:
    return np.log((np.clip(S, 0.0, 1.0) + SOFT_FLOOR) / (1.0 + SOFT_FLOOR))


def log_joint_score(S_cooc: np.ndarray, S_knn: np.ndarray) -> np.ndarray:
    """(N,) log joint score ``0.5 * (sum_k log s_cooc + min_k log s_knn)`` of self-confidences (N, K), each
    softly floored (:data:`SOFT_FLOOR`). 0 = every tag certainly right; more negative = more likely wrong."""
    S_cooc = np.asarray(S_cooc, dtype=np.float64)
    if S_cooc.shape[1] == 0:
        return np.zeros(len(S_cooc))
    return 0.5 * (_soft_log(S_cooc).sum(axis=1) + _soft_log(np.asarray(S_knn, dtype=np.float64)).min(axis=1))


def quality_root(n_tags: int) -> float:
    """The root of the label-quality display for K tags: :data:`QUALITY_ROOT`, or K / 50 beyond 100 tags (a log
    score sums over every tag: with 2,000 doubtful tags the square root would underflow to 0)."""
    return max(QUALITY_ROOT, n_tags / 50.0)


def readable_quality(log_score: np.ndarray, root: float = QUALITY_ROOT) -> np.ndarray:
    """(N,) label quality in (0, 1] from a log score: ``exp(log_score / root)``, strictly increasing."""
    return np.clip(np.exp(np.asarray(log_score, dtype=np.float64) / root), 0.0, 1.0)


class _Scorer:
    """Log joint score of any tag sets for given examples (stacked model + kNN probabilities + rules)."""

    def __init__(self, model: StackedModel, P_knn: np.ndarray, rules: Any) -> None:
        self.model, self.P_knn, self.rules = model, P_knn, rules

    def __call__(self, Y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        from dq_pipeline.rules import violation_counts

        rows = np.arange(len(self.P_knn)) if rows is None else np.asarray(rows)
        Y = np.asarray(Y, dtype=bool)
        P_cooc = self.model.probabilities(Y, rows)
        score = log_joint_score(self_confidence(Y, P_cooc), self_confidence(Y, self.P_knn[rows]))
        if self.rules is not None and self.rules.n_rules:
            score = score + VIOLATION_LOG_PENALTY * violation_counts(self.rules, Y)
        return score


def _gumbel_pick(mask: np.ndarray, logw: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a random column among ``mask`` (N, K) with weights exp(logw) ((K,) or (N, K));
    returns (index (N,), row has a candidate (N,))."""
    g = np.broadcast_to(logw, mask.shape) - np.log(-np.log(rng.random(mask.shape)))
    g = np.where(mask, g, -np.inf)
    return g.argmax(axis=1), mask.any(axis=1)


def plant_errors(Y: np.ndarray, rules: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One rule-keeping corruption per example: ``(Y_planted (N, K) bool, planted (N,) bool)``.

    Each example gets, in random order of preference, a dropped tag, an added tag (chosen by prevalence) or
    a swap (a carried tag replaced by an absent one: inside its one-of-N group if it has one, else by a
    prevalence-weighted tag outside groups); the first that breaks no learned rule the example did not
    already break is kept. ``planted`` is False where none qualified (the row is left as given).
    """
    from dq_pipeline.rules import violation_matrix_or_none

    rng = np.random.default_rng(seed)
    Y = np.asarray(Y, dtype=bool)
    N, K = Y.shape
    if N == 0 or K == 0:
        return Y.copy(), np.zeros(N, dtype=bool)
    prev = np.clip(Y.mean(axis=0), 1.0 / N, None)
    logw = np.log(prev)
    group_of = rules.group_of() if rules is not None else np.full(K, -1)
    rows = np.arange(N)
    k_drop, has_pos = _gumbel_pick(Y, np.zeros(K), rng)
    drop = Y.copy()
    drop[rows, k_drop] = False
    k_add, has_neg = _gumbel_pick(~Y, logw, rng)
    add = Y.copy()
    add[rows, k_add] = True
    # swap: j in k_drop's group if it has one, else among absent tags outside groups
    same_group = (group_of[None, :] == group_of[k_drop][:, None]) & (group_of[k_drop][:, None] >= 0)
    outside = (group_of[None, :] < 0) & (group_of[k_drop][:, None] < 0)
    # confusable first: weight of j for dropped k ~ exp(cosine of their co-occurrence profiles / 0.1) x prevalence
    Yf = Y.astype(np.float64)
    co = Yf.T @ Yf
    np.fill_diagonal(co, 0.0)
    unit = co / np.maximum(np.linalg.norm(co, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T / SWAP_TEMPERATURE
    j_swap, has_j = _gumbel_pick(~Y & (same_group | outside), sim[k_drop] + logw[None, :], rng)
    swap = drop.copy()
    swap[rows, j_swap] = True
    options = [(drop, has_pos), (add, has_neg), (swap, has_pos & has_j)]
    before = violation_matrix_or_none(rules, Y)
    ok = []
    for cand, feasible in options:
        v = violation_matrix_or_none(rules, cand)
        new = feasible.copy() if v is None else feasible & ~(v & ~before).any(axis=1)
        ok.append(new)
    order = np.argsort(rng.random((N, 3)), axis=1)
    out = Y.copy()
    planted = np.zeros(N, dtype=bool)
    for pos in range(3):
        for o, (cand, _) in enumerate(options):
            sel = ~planted & (order[:, pos] == o) & ok[o]
            out[sel] = cand[sel]
            planted |= sel
    return out, planted


def estimate_error_rate(observed: np.ndarray, planted: np.ndarray, seed: int = 0,
                        n_bootstrap: int = N_BOOTSTRAP) -> tuple[float, tuple[float, float]]:
    """Share of examples with a wrong tag from scores (low = likely wrong) of the examples as given
    (``observed``, (N,)) and of planted errors (``planted``, (M,)): ``G(t) / F1(t)`` at t = the
    :data:`ESTIMATE_QUANTILE` of the planted scores (G, F1: empirical distributions of the observed and planted
    scores), clipped to [0, 1]; with a bootstrap (examples resampled) :data:`INTERVAL` interval.

    ``G(t) = rate * F1(t) + (1 - rate) * F0(t)`` if the wrong examples score like planted errors; clean examples
    scoring below t (F0(t) > 0: a weak model, or errors already in the data) make it an over-estimate."""
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


def _candidates(y: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """(C, K) bool: y with one tag flipped, or one carried tag swapped for an absent one."""
    K = len(y)
    flips = np.repeat(y[None, :], K, axis=0)
    flips[np.arange(K), np.arange(K)] ^= True
    on, off = np.flatnonzero(y), np.flatnonzero(~y)
    if len(on) and len(off):
        a, b = np.repeat(on, len(off)), np.tile(off, len(on))
        swaps = np.repeat(y[None, :], len(a), axis=0)
        swaps[np.arange(len(a)), a] = False
        swaps[np.arange(len(a)), b] = True
        return np.vstack([flips, swaps])
    return flips


def suggest(Y: np.ndarray, rows: np.ndarray, model: StackedModel, P_knn: np.ndarray, rules: Any,
            P_tags: np.ndarray, edit_cost: float = SUGGEST_EDIT_COST) -> np.ndarray:
    """(N, K) bool suggested tags: Y with, for each example in ``rows``, the best of its given set and its
    valid changes (:func:`_candidates` breaking no learned rule) by ``0.5 * (sum log s_cooc + sum log s_knn)
    - edit_cost`` (the given set pays no cost). An example breaking a rule always gets a valid set (:func:`_candidates`,
    or :func:`dq_pipeline.rules.repair` of its given set using ``P_tags`` (N, K))."""
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
    features: np.ndarray | None = None,
    method: str = DEFAULT_METHOD,
    rules: Any = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DetectorResult:
    """Detect label issues from given tags Y (N, K) 0/1, out-of-fold probabilities P (N, K) and the
    features X (N, D) behind P (see the module doc).

    Returns a :class:`DetectorResult`: ``scores`` (N,) label quality in (0, 1] (low = likely wrong),
    ``flags`` (N,) the flagged examples (the lowest scores, about as many as the estimated errors, plus rule
    breakers), ``details`` one row per suggested change (example_index, tag_index, given, probability, kind,
    score), ``summary`` with ``expected_error_rate`` and its ``expected_error_rate_interval`` [lo, hi],
    ``label_rules`` (:meth:`dq_pipeline.rules.LabelRules.to_dict`) and counts. ``rules``: a
    :class:`~dq_pipeline.rules.LabelRules` (default: learned from Y). ``features=None``: no kNN evidence.
    ``method='cleanlab'``: cleanlab 2.9's defaults exactly (no rules, no estimate). ``progress(done, total)``:
    called as the second-stage fits (the long part) go (:func:`fit_stacked`).
    """
    from dq_pipeline.rules import learn_label_rules, violation_counts

    if method not in METHODS:
        raise ValueError(f"unknown label-issue method {method!r}; choose one of {METHODS}")
    if method == "cleanlab":
        from dq_pipeline.issues.cleanlab_parity import detect_parity

        return detect_parity(Y, P)
    Y = np.asarray(Y).astype(bool)
    P = np.asarray(P, dtype=np.float64)
    if Y.shape != P.shape or Y.ndim != 2:
        raise ValueError(f"tags {Y.shape} and probabilities {P.shape} must be the same (N, K) shape")
    N, K = Y.shape
    if rules is None:
        rules = learn_label_rules(Y)
    if features is not None and N > 1:
        votes = knn_tag_votes(features, Y)
        P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes
    else:
        votes, P_knn = None, P
    model = fit_stacked(Y, P, extra=votes, seed=seed, progress=progress)
    scorer = _Scorer(model, P_knn, rules)
    P_cooc = model.probabilities(Y)
    log_score = scorer(Y)
    violating = violation_counts(rules, Y) > 0 if rules.n_rules else np.zeros(N, dtype=bool)

    Y_planted, planted = plant_errors(Y, rules, seed=seed)
    ok = planted & ~violating
    planted_score = scorer(Y_planted[ok], np.flatnonzero(ok))
    rate, (lo, hi) = estimate_error_rate(log_score[~violating], planted_score, seed=seed)
    n_clean_side = int((~violating).sum())
    n_rank = int(round(rate * n_clean_side)) + int(violating.sum())
    order = np.lexsort((np.arange(N), log_score))
    flags = np.zeros(N, dtype=bool)
    flags[order[: min(n_rank, N)]] = True
    outside = violating & ~flags
    flags |= violating

    S = suggest(Y, np.flatnonzero(flags), model, P_knn, rules, 0.5 * (P_cooc + P_knn))
    details = tag_issue_rows(Y, P_cooc, S != Y)
    n_viol = int(violating.sum())
    expected = (n_viol + rate * n_clean_side) / N if N else 0.0
    exp_lo = (n_viol + lo * n_clean_side) / N if N else 0.0
    exp_hi = (n_viol + hi * n_clean_side) / N if N else 0.0
    incorrect = np.bincount(details.loc[details["given"], "tag_index"], minlength=K)
    missing = np.bincount(details.loc[~details["given"], "tag_index"], minlength=K)
    summary: dict[str, Any] = {
        "method": "ensemble",
        "n_examples": int(N),
        "n_label_issues": int(flags.sum()),
        "n_tag_issues": int(len(details)),
        "n_missing": int(missing.sum()),
        "n_incorrect": int(incorrect.sum()),
        "n_flagged_without_suggestion": int((flags & ~(S != Y).any(axis=1)).sum()),
        "expected_error_rate": float(expected),
        "expected_error_rate_interval": [float(exp_lo), float(exp_hi)],
        "expected_errors": int(round(expected * N)),
        "n_rule_violations": n_viol,
        "n_flagged_outside_prefix": int(outside.sum()),
        "incorrect_per_tag": incorrect.tolist(),
        "missing_per_tag": missing.tolist(),
        "label_rules": rules.to_dict(),
    }
    return DetectorResult(scores=readable_quality(log_score, quality_root(K)), flags=flags, summary=summary,
                          details=details)
