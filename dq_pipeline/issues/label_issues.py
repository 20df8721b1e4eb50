"""Label issues: which examples carry wrong tags, how many there are, and what the tags should be.

One detector, :func:`find_label_issues`, one return type (:class:`~dq_pipeline.issues.base.DetectorResult`).
From given tags Y (N, K), out-of-fold probabilities P (N, K) and the features X (N, D) behind P:

1. **Evidence.** ``P_knn = (P + votes) / 2``, where ``votes`` (N, K) is the share of each example's 15
   nearest neighbours (cosine on X, itself excluded) carrying each tag (:func:`knn_tag_votes`); and a
   second stage (:func:`fit_stacked`): per tag a cross-fitted logistic regression predicting the given tag
   from the standardised logits of P, the kNN votes and the example's *other* given tags (co-occurrence).
   Each example is predicted by models fitted on the other folds, so its own tags never inform it; because
   the model is linear in the other tags, any *hypothetical* tag set of an example can be scored without a
   refit (:class:`StackedModel`). Above :data:`STACK_MAX_ROWS` training rows per fold the fits are one batched
   Newton solve (:func:`fit_stacked`; issue 11), near-linear in N.
2. **Score** (ranking; low = likely wrong): a tag set's objective is ``log_joint = 0.5 * (sum_k log s_cooc_k +
   min_k log s_knn_k)`` (:func:`log_joint_score`) with ``s`` the self-confidence of each tag state (``p`` if
   carried else ``1 - p``) under the stacked and the kNN probabilities, each softly floored (``(s + 1e-3) /
   (1 + 1e-3)``: no ``-inf``). The score is the *margin* of the given set over the best set one change away from
   it that keeps the learned rules (:func:`alternative_margins`: a carried tag dropped, or one of the
   :data:`MARGIN_ADD_CANDIDATES` likeliest absent tags added or swapped in), plus :data:`VIOLATION_LOG_PENALTY`
   per learned rule the given set breaks (:mod:`dq_pipeline.rules`). Scoring the given set alone let a swapped-in
   tag explain the swapped-out one away (the second stage reads the other tags): the margin asks whether the
   swap back explains the example better (validation half: mean AUPRC 0.432 -> 0.447; ``bench/README.md``). The
   reported label quality is ``sigmoid(score / 2)`` (:func:`readable_quality`): strictly increasing, in (0, 1);
   below 0.5 a single change explains the example better than its given tags.
3. **How many are wrong** (:func:`estimate_error_rate`): every example gets one *planted* corruption that
   keeps the learned rules (drop a tag, add a tag, or swap one for another; inside a one-of-N group a swap
   stays in the group, a swap prefers a tag with a similar co-occurrence profile) and the planted tag sets are
   scored by the same model (at most :data:`PLANTED_MAX_ROWS` of them, a seeded sample). With ``G`` the
   distribution of the observed scores and ``F1`` that of planted
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
#: Second stage (:func:`fit_stacked`): up to this many training rows per fold, K sklearn fits per fold (as before
#: issue 11, same numbers); above, the same objective by the batched Newton solver (:func:`_newton_fold`;
#: bench/results/label_speed.md).
STACK_MAX_ROWS = 4000
#: That solver: stop at max |gradient| / rows below NEWTON_TOL (sklearn's tolerance) or after NEWTON_MAX_ITER
#: steps; a tag's Hessian is re-estimated after NEWTON_HESSIAN_EVERY steps; NEWTON_BLOCK rows of the design at a
#: time (memory).
NEWTON_TOL = 1e-4
NEWTON_MAX_ITER = 50
NEWTON_HESSIAN_EVERY = 4
NEWTON_BLOCK = 16384
#: Rows drawn (by curvature) for each tag's Hessian in that solver.
NEWTON_HESSIAN_ROWS = 2000
#: Newton steps per fold from the all-rows fit (:func:`fit_stacked`), and their tolerance: tighter than
#: NEWTON_TOL because the start (the all-rows fit) has seen the held-out rows. Flipping an example's own rare tag
#: moves its own probability by at most ~1e-3 with 2 steps on seeded synthetic data (1 step: 4e-3, 3 steps: 4e-4,
#: 4 steps: 2e-5, each step a pass over the data; below STACK_MAX_ROWS exactly 0).
NEWTON_FOLD_STEPS = 2
NEWTON_FOLD_TOL = 1e-7
TAG_ISSUE_COLUMNS = ["example_index", "tag_index", "given", "probability", "kind", "score"]
#: Label quality = ``sigmoid(score / QUALITY_ROOT)`` of the margin score: 0.5 = the best single change explains the
#: example as well as its given tags.
QUALITY_ROOT = 2.0
#: The margin of a set with no valid single change (nothing to compare with), and the cap of every margin.
MAX_MARGIN = 50.0
#: The margin's alternatives add (or swap in) only the absent tags most likely under the kNN-blended probabilities,
#: this many per example. Validation half, mean AUPRC: 2 tags 0.447, 4 tags 0.449, 8 tags 0.448 (flagged / true and
#: suggestions alike): the smallest within 0.002 of the best, at about a third of the sets of 8 (bench/README.md).
MARGIN_ADD_CANDIDATES = 2
#: The error-rate estimate scores planted errors of at most this many examples (a seeded sample above): every
#: benchmark dataset stays below; at 1M rows the margins of planted sets would cost as much as the observed ones.
PLANTED_MAX_ROWS = 20_000
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
#: Candidate tag sets scored at a time by :func:`suggest` (memory O(this x K)).
SUGGEST_BATCH_CANDIDATES = 1 << 17


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


def neighbour_votes(Y: np.ndarray, neighbours: np.ndarray, n_neighbors: int = DEFAULT_N_NEIGHBORS) -> np.ndarray:
    """(N, K) fraction of each example's first ``n_neighbors`` neighbours (columns of ``neighbours`` (N, k) int,
    nearest first, the example itself excluded) carrying each tag of Y (N, K); summed one neighbour column at a
    time (memory O(N K), no (N, k, K) array)."""
    Y = np.asarray(Y)
    idx = np.asarray(neighbours)
    if idx.ndim != 2 or len(idx) != len(Y) or idx.shape[1] < 1:
        raise ValueError(f"neighbours must be ({len(Y)}, k >= 1) row indices, one row per example; got shape "
                         f"{idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer) or (idx.size and (idx.min() < 0 or idx.max() >= len(Y))):
        raise ValueError(f"neighbours must be integer row indices in [0, {len(Y)}); got dtype {idx.dtype}, range "
                         f"[{idx.min() if idx.size else ''}, {idx.max() if idx.size else ''}]")
    k = min(n_neighbors, idx.shape[1])
    votes = Y[idx[:, 0]].astype(np.float64)
    for j in range(1, k):
        votes += Y[idx[:, j]]
    votes /= k
    return votes


def _negate_where(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` (float32 or float64) negated where ``mask`` (same shape, bool), in place, by flipping the sign bit (a
    masked ``np.negative(where=)`` is about 5x slower). Returns x."""
    bits = x.view(np.uint32 if x.dtype == np.float32 else np.uint64)
    np.bitwise_xor(bits, np.left_shift(mask, 8 * x.itemsize - 1, dtype=bits.dtype), out=bits)
    return x


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
        from threadpoolctl import threadpool_limits

        rows = np.arange(len(self.base)) if rows is None else np.asarray(rows)
        Yf = np.asarray(Y, dtype=np.float64)
        out = self.base[rows].copy()
        folds = self.fold[rows]
        with threadpool_limits(1):  # thin products: one BLAS thread (no contention)
            for f in np.unique(folds):
                sel = folds == f
                out[sel] += Yf[sel] @ self.W[f].T
        return out

    def probabilities(self, Y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return _sigmoid(self.logits(Y, rows))


def fit_stacked(Y: np.ndarray, P: np.ndarray, extra: np.ndarray | None = None, use_other_tags: bool = True,
                n_folds: int = DEFAULT_STACK_FOLDS, seed: int = 0,
                progress: Callable[[int, int], None] | None = None,
                max_rows: int | None = STACK_MAX_ROWS) -> StackedModel:
    """Fit the second stage: for each tag k and fold, a logistic regression of the given tag on the
    standardised logits of P (N, K), ``extra`` (N, E) and (``use_other_tags``) the other given tags, fitted
    on the other folds (seeded ``KFold``). A tag constant within a training fold gets that fold's state.

    Up to ``max_rows`` training rows per fold (None: no limit), K sklearn ``LogisticRegression`` fits per fold
    (newton-cholesky, as before issue 11). Above, the same objective by a batched Newton solver
    (:func:`_newton_fold`): a start fitted on :data:`NEWTON_HESSIAN_ROWS` / 2 random rows, the K fits on all N
    rows, then per fold up to :data:`NEWTON_FOLD_STEPS` Newton steps from there on the fold's training rows (exact
    gradients; the held-out rows' influence removed to :data:`NEWTON_FOLD_TOL`) -- O(N K^2) per pass, a few
    dozen passes in all, instead of K x folds fits of O(N K^2 x Newton iterations) each. Within sklearn's
    tolerance of the separate fits (dq_pipeline_tests/issues/test_label_speed.py; bench/results/label_speed.md).

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
    parts = [L] if extra is None else [L, np.asarray(extra, dtype=np.float64)]
    if N < 2:
        return StackedModel(_logit(Y.astype(np.float64)), W, fold)
    splits = list(KFold(n_f, shuffle=True, random_state=seed).split(np.empty((N, 0))))
    for f, (_, test) in enumerate(splits):
        fold[test] = f
    n_base = sum(p.shape[1] for p in parts)
    rng = np.random.default_rng(seed)
    n_stages = len(splits)
    if max_rows is not None and min(len(train) for train, _ in splits) > max_rows:
        n_stages += 1
        with threadpool_limits(1):
            # a start from random rows, then the fits on all rows, then each fold's fits from there
            m = min(N, NEWTON_HESSIAN_ROWS // 2)
            sub = np.sort(rng.choice(N, m, replace=False))
            X32 = _newton_design(parts, Y, use_other_tags)
            B0, _, _ = _newton_fold(X32[sub], Y[sub], np.ones(m, dtype=bool), use_other_tags, rng, None, {},
                                    hessian_every=1)
            factors: dict[int, Any] = {}
            B_all, Z_all, G_all = _newton_fold(X32, Y, np.ones(N, dtype=bool), use_other_tags, rng, B0, factors,
                                               hessian_every=1)
            if progress is not None:
                progress(K, K * n_stages)
            for f, (train, test) in enumerate(splits):
                in_train = np.zeros(N, dtype=bool)
                in_train[train] = True
                # the training rows' gradient at the all-rows optimum: all rows' less the held-out rows'
                G0 = None if G_all is None else G_all - _held_out_gradient(X32, Y, Z_all, test)
                B, _, _ = _newton_fold(X32, Y, in_train, use_other_tags, rng, B_all, dict(factors),
                                       max_steps=NEWTON_FOLD_STEPS, Z0=Z_all, tol=NEWTON_FOLD_TOL, line_search=False,
                                       need_logits=False, G0=G0)
                base[test] = _design_times(parts, B[:n_base + 1], test)
                if use_other_tags:
                    W[f] = B[n_base + 1:].T
                if progress is not None:
                    progress((f + 2) * K, K * n_stages)
        return StackedModel(base, W, fold)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f, (train, test) in enumerate(splits):
            X_test = np.hstack([p[test] for p in parts])  # one fold's rows at a time: memory O(N / folds)
            for k in range(K):
                others = np.delete(np.arange(K), k)
                y = Y[train, k]
                if y.min() == y.max():
                    base[test, k] = _logit(np.array([float(y[0])]))[0]
                else:
                    F = np.hstack([p[train] for p in parts]
                                  + ([Y[train][:, others].astype(np.float64)] if use_other_tags else []))
                    model = LogisticRegression(solver="newton-cholesky", max_iter=100)
                    model.fit(F, y)
                    coef = model.coef_[0]
                    base[test, k] = X_test @ coef[:n_base] + model.intercept_[0]
                    if use_other_tags:
                        W[f, k, others] = coef[n_base:]
                if progress is not None:
                    progress(f * K + k + 1, K * len(splits))
    return StackedModel(base, W, fold)


def _design_times(cols: list[np.ndarray], B: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(n, K) ``[1, cols...] @ B`` over ``rows`` (default all) without building the design matrix."""
    out = np.broadcast_to(B[0], (len(cols[0]) if rows is None else len(rows), B.shape[1])).copy()
    at = 1
    for c in cols:
        out += (c if rows is None else c[rows]) @ B[at:at + c.shape[1]]
        at += c.shape[1]
    return out


def _newton_design(parts: list[np.ndarray], Y: np.ndarray, use_other_tags: bool) -> np.ndarray:
    """(N, d) float32 design ``[1, parts..., Y]`` of :func:`_newton_fold` (the tags only with ``use_other_tags``):
    built once, so every pass over the rows is one float32 matrix product per block (3-7x faster than a product
    per float64 part with the tags converted each time; the fit's tolerances are far above float32 rounding)."""
    N, K = Y.shape
    widths = [1] + [p.shape[1] for p in parts] + ([K] if use_other_tags else [])
    X = np.empty((N, sum(widths)), dtype=np.float32)
    X[:, 0] = 1.0
    at = 1
    for c in parts + ([Y] if use_other_tags else []):
        X[:, at:at + c.shape[1]] = c
        at += c.shape[1]
    return X


def _held_out_gradient(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(d, K) log-loss gradient ``X.T @ (sigmoid(Z) - Y)`` over ``rows`` only (X (N, d): the design of
    :func:`_newton_fold`), :data:`NEWTON_BLOCK` rows at a time."""
    G = np.zeros((X.shape[1], Y.shape[1]))
    for a in range(0, len(rows), NEWTON_BLOCK):
        r = rows[a:a + NEWTON_BLOCK]
        R = _sigmoid(Z[r].astype(np.float32))
        R -= Y[r]
        G += X[r].T @ R
    return G


def _newton_fold(X: np.ndarray, Y: np.ndarray, in_train: np.ndarray, use_other_tags: bool,
                 rng: np.random.Generator, B0: np.ndarray | None, factors: dict[int, Any],
                 hessian_every: int = NEWTON_HESSIAN_EVERY, max_steps: int = NEWTON_MAX_ITER,
                 Z0: np.ndarray | None = None, tol: float = NEWTON_TOL,
                 line_search: bool = True, need_logits: bool = True, G0: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(d, K) coefficients (row 0 the intercepts) of one fold's K second-stage fits on the rows ``in_train`` (N,)
    at once: the optimum of sklearn's ``LogisticRegression(C=1)`` objective per tag (log-loss summed over rows +
    half the squared weights, intercept unpenalised; the design X (N, d) float32 is ``[1, parts..., Y]``
    (:func:`_newton_design`; the tags last with ``use_other_tags``, tag k's own weight fixed at 0); a tag
    constant on the training rows gets intercept logit(0 or 1), clipped, and no weights).

    Newton steps with full gradients over all training rows (float32 products of X, :data:`NEWTON_BLOCK` rows at a
    time; the fit's tolerances are far above float32 rounding); each tag's Hessian is estimated from about :data:`NEWTON_HESSIAN_ROWS` rows drawn by
    curvature (:func:`_curvature_rows`) and its Cholesky factor kept in ``factors`` (reused by the folds: the
    all-rows Hessian, scaled to their row count, is close) until a step has to be shortened or it is ``hessian_every`` steps old; backtracking
    line search (``line_search=False``: whole steps, for the folds' steps from the all-rows optimum, which the
    line search accepted whole in every step measured); stops at max |gradient| / rows <= ``tol`` or after
    ``max_steps`` steps. ``B0``: a start, ``Z0`` (N, K) its logits (``X @ B0``) if known.
    ``G0`` (d, K): the objective's gradient at ``B0`` over the training rows if known (skips the first pass).
    Returns (B, its logits (N, K), the gradient at B or None if the last step was not followed by one);
    ``need_logits=False`` with a fixed number of whole steps: logits None, the last step's pass over the rows
    for them skipped."""
    from scipy.linalg import cho_factor, cho_solve

    N, K = Y.shape
    n = int(in_train.sum())
    every = n == N  # all rows train: no masking
    d = X.shape[1]
    blocks = [slice(a, min(N, a + NEWTON_BLOCK)) for a in range(0, N, NEWTON_BLOCK)]

    def times(sl: slice, M: np.ndarray) -> np.ndarray:  # X[sl] @ M (float32)
        return X[sl] @ M.astype(np.float32)

    def t_times(sl: slice, R: np.ndarray) -> np.ndarray:  # X[sl].T @ R (float32)
        return X[sl].T @ R.astype(np.float32, copy=False)

    S = np.empty((N, K), dtype=np.float32)  # sigmoid(Z) of the last gradient pass: the Hessians' curvatures
    prev = Y[in_train].sum(axis=0) / n
    const = (prev == 0.0) | (prev == 1.0)
    free = np.ones((d, K), dtype=bool)
    if use_other_tags:
        free[d - K + np.arange(K), np.arange(K)] = False
    free[:, const] = False
    lam = np.ones(d)
    lam[0] = 0.0
    B = np.zeros((d, K)) if B0 is None else B0.copy()
    if B0 is None:
        B[0] = _logit(prev)
    B[~free] = 0.0
    B[0, const] = _logit(prev[const])
    if Z0 is not None:
        Z = Z0.copy()
    else:
        Z = np.empty((N, K))
        for sl in blocks:
            Z[sl] = times(sl, B)

    def loss(t: np.ndarray, D: np.ndarray | None) -> np.ndarray:  # (K,) objective at B - t * step
        out = np.zeros(K)
        for sl in blocks:
            # log(1 + e^z) - y z = log(1 + e^-|u|) + max(u, 0) with u = -z where y, z elsewhere; in place
            u = _negate_where(Z[sl].copy() if D is None else Z[sl] - D[sl] * t, Y[sl])
            pos = np.maximum(u, 0.0)
            np.abs(u, out=u)
            np.negative(u, out=u)
            np.exp(u, out=u)
            np.log1p(u, out=u)
            u += pos
            out += u.sum(axis=0) if every else u[in_train[sl]].sum(axis=0)
        return out

    # the objective is only read by the line search (whole steps never compare it)
    loss0 = (loss(np.zeros(K), None) + 0.5 * (lam[:, None] * B * B).sum(axis=0)) if line_search else np.zeros(K)
    active = ~const
    age = {k: v[1] for k, v in factors.items()}
    for it in range(max_steps + 1):
        if it == max_steps and max_steps < NEWTON_MAX_ITER:
            break  # a fixed number of steps: no final gradient pass
        fresh = not (it == 0 and G0 is not None)  # S = sigmoid(Z) of this B, kept for the curvatures below
        if not fresh:
            G = G0.copy()
        else:
            G = lam[:, None] * B
            for sl in blocks:
                R = _sigmoid(Z[sl].astype(np.float32))  # float32 as the product it feeds
                S[sl] = R
                R -= Y[sl]
                if not every:
                    R[~in_train[sl]] = 0.0
                G += t_times(sl, R)
        G[~free] = 0.0
        active &= np.abs(G).max(axis=0) > tol * n
        if not active.any():
            break
        for k in [k for k in np.flatnonzero(active) if k not in factors or age[k] >= hessian_every]:
            s = S[:, k].astype(np.float64) if fresh else _sigmoid(Z[:, k])
            curvature = s * (1.0 - s) * in_train
            rows, weight = _curvature_rows(curvature, NEWTON_HESSIAN_ROWS, rng)
            fr = free[:, k]
            Xs = X[rows][:, fr]  # float32: the Hessian is an estimate from sampled rows anyway
            H = (Xs.T @ (Xs * (curvature[rows] * weight).astype(np.float32)[:, None])).astype(np.float64)
            H[np.diag_indices_from(H)] += lam[fr]
            factors[k] = (cho_factor(H, check_finite=False), 0, n)
            age[k] = 0
        step = np.zeros((d, K))
        for k in np.flatnonzero(active):
            fr = free[:, k]
            # a Hessian from another row count (all rows, for a fold): scaled to this one's
            step[fr, k] = cho_solve(factors[k][0], G[fr, k], check_finite=False) * (factors[k][2] / n)
            age[k] += 1
        if not (line_search or need_logits) and max_steps < NEWTON_MAX_ITER and it == max_steps - 1:
            B -= step * active  # the last of a fixed number of whole steps: nobody reads its logits
            Z, G = None, None
            break
        D = np.empty((N, K))
        for sl in blocks:
            D[sl] = times(sl, step)
        decrease = (G * step).sum(axis=0)
        t = np.where(active, 1.0, 0.0)
        todo = active.copy()
        if not line_search:  # whole steps, as the line search takes them from a nearby optimum: no loss pass
            todo[:] = False
            new = loss0
        for _ls in range(30 if line_search else 0):
            new = loss(t, D) + 0.5 * (lam[:, None] * (B - step * t) ** 2).sum(axis=0)
            todo &= ~(new <= loss0 - 1e-4 * t * decrease)
            if not todo.any():
                break
            t = np.where(todo, t * 0.5, t)
            for k in np.flatnonzero(todo):
                age[k] = hessian_every  # a shortened step: refresh that Hessian next time
        t = np.where(todo, 0.0, t)
        B -= step * t
        for sl in blocks:
            Z[sl] -= D[sl] * t
        loss0 = np.where(t > 0, new, loss0)
        del D
        G = None  # B moved: the gradient is stale until the next pass
    for k in list(factors):
        factors[k] = (factors[k][0], age[k], factors[k][2])
    return B, Z, G


def _curvature_rows(w: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """About ``m`` row positions drawn with probability ``min(1, m w_i / sum w)`` (systematic sampling on the
    cumulative probabilities: rows of large curvature ``w`` (n,) always, the rest in proportion) and their weights
    ``1 / probability``: ``sum weight * w * x x^T`` over them estimates the Hessian without bias."""
    total = float(w.sum())
    if total <= 0.0 or len(w) <= m:
        return np.arange(len(w)), np.ones(len(w))
    prob = np.minimum(1.0, w * (m / total))
    for _ in range(3):  # rows capped at 1 leave probability mass: spread it over the others
        short = m - prob.sum()
        rest = prob < 1.0
        if short < 0.5 or not rest.any():
            break
        prob[rest] = np.minimum(1.0, prob[rest] * (1.0 + short / prob[rest].sum()))
    c = np.cumsum(prob)
    points = rng.random() + np.arange(int(np.floor(c[-1] - 1e-12)) + 1)
    rows = np.searchsorted(c, points[points < c[-1]], side="right")
    rows = np.unique(rows)
    return rows, 1.0 / prob[rows]


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


def readable_quality(score: np.ndarray, root: float = QUALITY_ROOT) -> np.ndarray:
    """(N,) label quality in (0, 1) from a margin score (:class:`_Scorer`): ``sigmoid(score / root)``, strictly
    increasing; 0.5 = the best single change explains the example as well as its given tags."""
    from scipy.special import expit

    return expit(np.asarray(score, dtype=np.float64) / root)


class _Scorer:
    """Label score of any tag sets for given examples: the margin of each set over its best single-change
    alternative (:func:`alternative_margins`) plus :data:`VIOLATION_LOG_PENALTY` per learned rule it breaks."""

    def __init__(self, model: StackedModel, P_knn: np.ndarray, rules: Any) -> None:
        self.model, self.P_knn, self.rules = model, P_knn, rules

    def __call__(self, Y: np.ndarray, rows: np.ndarray | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n,) scores of tag sets Y (n, K) for examples ``rows`` (default all); lower = more likely wrong.
        ``progress(done, total)``: examples scored."""
        from dq_pipeline.rules import violation_counts

        rows = np.arange(len(self.P_knn)) if rows is None else np.asarray(rows)
        Y = np.asarray(Y, dtype=bool)
        score = alternative_margins(Y, rows, self.model, self.P_knn, self.rules, progress)
        if self.rules is not None and self.rules.n_rules:
            score = score + VIOLATION_LOG_PENALTY * violation_counts(self.rules, Y)
        return score


def _single_changes(y: np.ndarray, targets: np.ndarray, valid: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sets one change away from each row of y (n, K) bool: a carried tag dropped, an absent tag of ``targets``
    (n, m) column indices (where ``valid`` (n, m)) added, or a carried tag swapped for one of them. Returns (sets
    (C, K), owner (C,) = the row each came from, added (C,) and removed (C,) = the tag added / removed, -1 for
    none). O(C K): the swaps are enumerated from the carried tags and the m targets, not from all K x K pairs."""
    n, m = targets.shape
    r_d, j_d = np.nonzero(y)
    r_a, t_a = np.nonzero(valid)
    j_a = targets[r_a, t_a]
    pair = np.repeat(np.arange(len(r_d)), m)  # each carried tag x each target slot of its row
    slot = np.tile(np.arange(m), len(r_d))
    ok = valid[r_d[pair], slot]
    pair, slot = pair[ok], slot[ok]
    r_s, c_s, j_s = r_d[pair], j_d[pair], targets[r_d[pair], slot]
    owner = np.concatenate([r_d, r_a, r_s])
    removed = np.concatenate([j_d, np.full(len(r_a), -1), c_s])
    added = np.concatenate([np.full(len(r_d), -1), j_a, j_s])
    sets = y[owner]
    at = np.arange(len(owner))
    has_r, has_a = removed >= 0, added >= 0
    sets[at[has_r], removed[has_r]] = False
    sets[at[has_a], added[has_a]] = True
    return sets, owner, added, removed


def _likely_absent(y: np.ndarray, p: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of y (n, K) bool, the ``m`` absent tags with the highest probabilities p (n, K) (every absent tag
    where K <= m): (column indices (n, min(m, K)), valid (n, min(m, K)) bool -- False where the row has fewer
    absent tags)."""
    n, K = y.shape
    if K <= m:
        top = np.broadcast_to(np.arange(K), (n, K))
    else:
        top = np.argpartition(-np.where(y, -np.inf, p), m - 1, axis=1)[:, :m]
    return top, ~np.take_along_axis(y, top, axis=1)


def _cooc_part(sets: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(C,) ``sum_k log s_cooc_k`` of :func:`log_joint_score` for tag sets (C, K) from their float32 second-stage
    logits (C, K), in place (it overwrites them): the self-confidence of a tag state is sigmoid(+z) if carried,
    sigmoid(-z) if not."""
    _negate_where(logits, sets)  # -z where carried
    np.exp(logits, out=logits)  # s = 1 / (1 + exp(-(+-z)))
    logits += 1.0
    np.reciprocal(logits, out=logits)
    logits += SOFT_FLOOR
    total = np.log(logits, out=logits).sum(axis=1, dtype=np.float64)
    return total - sets.shape[1] * np.log1p(SOFT_FLOOR)  # the soft floor's / (1 + SOFT_FLOOR), once per set


def _three_smallest(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values (n, 3), column indices (n, 3)) of the three smallest entries per row of v (n, K >= 1), ascending;
    rows with K < 3 are padded with +inf at index -1."""
    n, K = v.shape
    if K > 3:
        idx = np.argpartition(v, 2, axis=1)[:, :3]
    else:
        idx = np.tile(np.arange(K), (n, 1))
    vals = np.take_along_axis(v, idx, axis=1)
    if K < 3:
        vals = np.hstack([vals, np.full((n, 3 - K), np.inf)])
        idx = np.hstack([idx, np.full((n, 3 - K), -1)])
    order = np.argsort(vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def alternative_margins(Y: np.ndarray, rows: np.ndarray, model: StackedModel, P_knn: np.ndarray,
                        rules: Any, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(n,) how much better tag set Y[i] (n, K) of example rows[i] scores than the best set one change away from
    it that breaks no learned rule -- a carried tag dropped, or one of the :data:`MARGIN_ADD_CANDIDATES` absent tags
    most likely under the kNN-blended probabilities added or swapped in for a carried one -- each scored by
    :func:`log_joint_score` under the second stage (which reads the set's other tags) and the kNN-blended
    probabilities. Negative = some single change explains the example better (a likely error); :data:`MAX_MARGIN`
    where no valid change exists. A change moves the second stage's logits by the weight rows of the tags it adds
    and removes (the model is linear in the other tags), and the kNN minimum by at most its two changed tags, so
    no set is multiplied through the weights again. Batched by fold, about :data:`SUGGEST_BATCH_CANDIDATES`
    candidate sets at a time (on average). ``progress(done, total)``: examples scored, after each batch."""
    from threadpoolctl import threadpool_limits

    from dq_pipeline.rules import violation_counts

    Y = np.asarray(Y, dtype=bool)
    rows = np.asarray(rows, dtype=np.int64)
    n, K = Y.shape
    out = np.full(n, MAX_MARGIN)
    if n == 0 or K == 0:
        return out
    has_rules = rules is not None and rules.n_rules > 0
    m = min(MARGIN_ADD_CANDIDATES, K)
    step = max(1, int(SUGGEST_BATCH_CANDIDATES // ((Y.sum(axis=1).mean() + 1.0) * (m + 1) + 1)))  # ~sets per row
    idx = np.argsort(model.fold[rows], kind="stable")
    cuts = np.flatnonzero(np.diff(model.fold[rows[idx]])) + 1
    done = 0
    with threadpool_limits(1):  # thin products: one BLAS thread (no contention)
        for part in np.split(idx, cuts):
            # row j: how carrying tag j moves every tag's logit; row K: no tag (zeros)
            WT = np.vstack([model.W[model.fold[rows[part[0]]]].T, np.zeros((1, K))])
            WT32 = WT.astype(np.float32)  # the candidates' logits in float32 (half the memory traffic)
            for i in range(0, len(part), step):
                b = part[i:i + step]
                y, at = Y[b], rows[b]
                logits0 = model.base[at] + y.astype(np.float64) @ WT[:K]
                pk = P_knn[at]
                on, off = _soft_log(pk), _soft_log(1.0 - pk)
                given = log_joint_score(self_confidence(y, _sigmoid(logits0)), self_confidence(y, pk))
                cand, owner, added, removed = _single_changes(y, *_likely_absent(y, pk, m))
                if has_rules:
                    keep = violation_counts(rules, cand) == 0
                    cand, owner, added, removed = cand[keep], owner[keep], added[keep], removed[keep]
                best = np.full(len(b), -np.inf)
                if len(cand):
                    a, r = np.where(added < 0, K, added), np.where(removed < 0, K, removed)
                    logits = logits0.astype(np.float32)[owner]
                    logits += WT32[a]
                    logits -= WT32[r]
                    cooc = _cooc_part(cand, logits)
                    # kNN minimum: the given states' minimum over the unchanged tags, and the changed tags' new states
                    v3, i3 = _three_smallest(np.where(y, on, off))  # the given states' kNN soft logs
                    v3, i3 = v3[owner], i3[owner]
                    free = (i3 != added[:, None]) & (i3 != removed[:, None])
                    knn = np.where(free, v3, np.inf).min(axis=1)
                    knn = np.minimum(knn, np.where(added >= 0, on[owner, np.maximum(added, 0)], np.inf))
                    knn = np.minimum(knn, np.where(removed >= 0, off[owner, np.maximum(removed, 0)], np.inf))
                    np.maximum.at(best, owner, 0.5 * (cooc + knn))
                out[b] = np.minimum(given - best, MAX_MARGIN)
                done += len(b)
                if progress is not None:
                    progress(done, n)
    return out


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
    from dq_pipeline.rules import cooccurrence, violation_matrix_or_none

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
    co = cooccurrence(Y)
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
    scores), clipped to [0, 1]; with a bootstrap (examples resampled) :data:`INTERVAL` interval, each resample
    drawn in O(1) (:func:`_bootstrap_rates`).

    ``G(t) = rate * F1(t) + (1 - rate) * F0(t)`` if the wrong examples score like planted errors; clean examples
    scoring below t (F0(t) > 0: a weak model, or errors already in the data) make it an over-estimate."""
    observed = np.asarray(observed, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    if len(observed) == 0 or len(planted) == 0:
        return 0.0, (0.0, 0.0)

    def rate(obs: np.ndarray, pl: np.ndarray) -> float:
        t = np.quantile(pl, ESTIMATE_QUANTILE)
        f1 = np.count_nonzero(pl <= t) / len(pl)
        g = np.count_nonzero(obs <= t) / len(obs)
        return float(np.clip(g / max(f1, 1e-12), 0.0, 1.0))

    point = rate(observed, planted)
    rng = np.random.default_rng(seed)
    boots = _bootstrap_rates(observed, planted, n_bootstrap, rng) if n_bootstrap > 0 else []
    lo, hi = np.quantile(boots, INTERVAL) if len(boots) else (point, point)
    return point, (float(min(lo, point)), float(max(hi, point)))


def _bootstrap_rates(observed: np.ndarray, planted: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) the estimate ``G(t) / F1(t)`` on n bootstrap resamples (observed and planted scores each resampled
    with replacement), drawn in O(1) each from the resample's distribution rather than by building it: with the
    planted scores sorted once, the two order statistics the quantile t interpolates are order statistics of
    uniforms (``Beta(j, M - j + 1)``, then the next one given it) mapped through the sorted scores; the resampled
    planted scores <= t are those j (plus, where the upper one ties at t, it and a binomial share of the rest);
    the resampled observed scores <= t are ``Binomial(N, G(t))``. The same distribution as resampling (ties
    included), O(M log M) once instead of O(M) per resample."""
    sorted_obs, sorted_pl = np.sort(observed), np.sort(planted)
    n_obs, m = len(sorted_obs), len(sorted_pl)
    h = ESTIMATE_QUANTILE * (m - 1)
    j = int(np.floor(h)) + 1  # 1-based rank of the lower order statistic, < m when m >= 2
    frac = h - (j - 1)
    if m < 2:
        t = np.full(n, sorted_pl[0])
        f1 = np.ones(n)
    else:
        u = rng.beta(j, m - j + 1, n)
        u2 = u + (1.0 - u) * (1.0 - rng.random(n) ** (1.0 / (m - j)))
        a = np.minimum((u * m).astype(np.int64), m - 1)
        b = np.minimum((u2 * m).astype(np.int64), m - 1)
        va, vb = sorted_pl[a], sorted_pl[b]
        t = va + (vb - va) * frac
        below = np.searchsorted(sorted_pl, t, side="right")  # planted scores <= t: sorted positions < below
        tie = b < below
        share = np.clip((below / m - u2) / np.maximum(1.0 - u2, 1e-300), 0.0, 1.0)
        extra = np.where(tie, rng.binomial(m - j - 1, np.where(tie, share, 0.0)), 0)
        f1 = (j + tie + extra) / m
    g = rng.binomial(n_obs, np.searchsorted(sorted_obs, t, side="right") / n_obs) / n_obs
    return np.clip(g / np.maximum(f1, 1e-12), 0.0, 1.0)


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
            P_tags: np.ndarray, edit_cost: float = SUGGEST_EDIT_COST,
            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, K) bool suggested tags: Y with, for each example in ``rows``, the best of its given set and its
    valid changes (:func:`_candidates` breaking no learned rule) by ``0.5 * (sum log s_cooc + sum log s_knn)
    - edit_cost`` (the given set pays no cost; ties: the first in the order given set, flips, swaps). An example
    breaking a rule always gets a valid set (:func:`_candidates`, or :func:`dq_pipeline.rules.repair` of its
    given set using ``P_tags`` (N, K)). Vectorised over batches of rows (about :data:`SUGGEST_BATCH_CANDIDATES`
    candidate sets at a time); the same choice as scoring each row's candidates on their own. ``progress(done,
    total)``: examples of ``rows`` done, after each batch."""
    from threadpoolctl import threadpool_limits

    Y = np.asarray(Y, dtype=bool)
    S = Y.copy()
    rows = np.asarray(rows, dtype=np.int64)
    K = Y.shape[1]
    if len(rows) == 0 or K == 0:
        return S
    has_rules = rules is not None and rules.n_rules > 0
    per_row = K + (K * K) // 4 + 2
    step = max(1, SUGGEST_BATCH_CANDIDATES // per_row)
    rows = rows[np.argsort(model.fold[rows], kind="stable")]
    cuts = np.flatnonzero(np.diff(model.fold[rows])) + 1
    batches = [b[i:i + step] for b in np.split(rows, cuts) for i in range(0, len(b), step)]
    done = 0
    with threadpool_limits(1):  # small products: one BLAS thread is faster (and no contention)
        for batch in batches:  # rows of one fold: their stacked logits are one matrix product
            _suggest_batch(S, Y, batch, model, P_knn, rules, P_tags, edit_cost, has_rules)
            done += len(batch)
            if progress is not None:
                progress(done, len(rows))
    return S


def _suggest_batch(S: np.ndarray, Y: np.ndarray, batch: np.ndarray, model: StackedModel, P_knn: np.ndarray,
                   rules: Any, P_tags: np.ndarray, edit_cost: float, has_rules: bool) -> None:
    """:func:`suggest` for the rows ``batch`` (one fold), written into ``S``."""
    from dq_pipeline.rules import repair, violation_counts

    K = Y.shape[1]
    y = Y[batch]
    n = len(batch)
    violating = violation_counts(rules, y) > 0 if has_rules else np.zeros(n, dtype=bool)
    # flips: row r, tag j flipped; swaps: row r, carried tag c replaced by absent tag j (order r, c, j)
    flips = np.repeat(y, K, axis=0)
    flips[np.arange(n * K), np.tile(np.arange(K), n)] ^= True
    r_s, c_s, j_s = np.nonzero(y[:, :, None] & ~y[:, None, :])
    swaps = y[r_s]
    swaps[np.arange(len(r_s)), c_s] = False
    swaps[np.arange(len(r_s)), j_s] = True
    parts = [flips, swaps]
    owners = [np.repeat(np.arange(n), K), r_s]
    vi = np.flatnonzero(violating)
    if len(vi):
        parts.append(np.stack([repair(rules, y[r], P_tags[batch[r]]) for r in vi]))
        owners.append(vi)
    cand = np.concatenate(parts)
    owner = np.concatenate(owners)
    if has_rules:
        keep = violation_counts(rules, cand) == 0
        cand, owner = cand[keep], owner[keep]
    given = np.flatnonzero(~violating)
    cand = np.concatenate([y[given], cand])
    owner = np.concatenate([given, owner])
    order = np.argsort(owner, kind="stable")  # per row: given set, flips, swaps, repair (the loop's order)
    cand, owner = cand[order], owner[order]
    if len(cand) == 0:
        return
    knn_on, knn_off = _soft_log(P_knn[batch]), _soft_log(1.0 - P_knn[batch])
    at = batch[owner]
    logits = model.base[at]
    logits += cand.astype(np.float64) @ model.W[model.fold[batch[0]]].T
    p = _sigmoid(logits)
    sc = np.where(cand, p, 1.0 - p)  # in [0, 1]: _soft_log's clip is the identity
    sc += SOFT_FLOOR
    sc /= 1.0 + SOFT_FLOOR
    cooc = np.log(sc, out=sc).sum(axis=1)
    del p, sc, logits
    knn_log = (knn_on[owner], knn_off[owner])
    objective = 0.5 * (cooc + np.where(cand, *knn_log).sum(axis=1))
    objective -= edit_cost * (cand != y[owner]).any(axis=1)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    best = np.maximum.reduceat(objective, starts)
    is_best = objective == np.repeat(best, np.diff(np.r_[starts, len(owner)]))
    hit = np.flatnonzero(is_best)
    _, first = np.unique(owner[hit], return_index=True)
    pick = hit[first]
    S[batch[owner[pick]]] = cand[pick]


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
    neighbours: np.ndarray | None = None,
    stage_progress: Callable[[str, str], Callable[[int, int], None]] | None = None,
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
    called as the second-stage fits (the long part) go (:func:`fit_stacked`). ``neighbours``: (N, k >= 1) int
    indices of each example's nearest other examples, nearest first (the audit's shared neighbour graph): the
    kNN votes then use its first :data:`DEFAULT_N_NEIGHBORS` columns and no search is run (``features`` unused).
    ``stage_progress(stage, unit)``: a ``progress(done, total)`` callback for each later long stage ("label
    scores": examples scored; "suggestions": flagged examples given a suggestion).
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
    if neighbours is not None and N > 1:
        votes = neighbour_votes(Y, neighbours)
        P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes
    elif features is not None and N > 1:
        votes = knn_tag_votes(features, Y)
        P_knn = (1.0 - DEFAULT_KNN_WEIGHT) * P + DEFAULT_KNN_WEIGHT * votes
    else:
        votes, P_knn = None, P
    model = fit_stacked(Y, P, extra=votes, seed=seed, progress=progress, max_rows=STACK_MAX_ROWS)
    scorer = _Scorer(model, P_knn, rules)
    P_cooc = model.probabilities(Y)
    log_score = scorer(Y, progress=None if stage_progress is None else stage_progress("label scores", "examples"))
    violating = violation_counts(rules, Y) > 0 if rules.n_rules else np.zeros(N, dtype=bool)

    Y_planted, planted = plant_errors(Y, rules, seed=seed)
    ok = np.flatnonzero(planted & ~violating)
    if len(ok) > PLANTED_MAX_ROWS:  # the estimate needs the planted scores' distribution, not one per example
        ok = np.sort(np.random.default_rng(seed).choice(ok, PLANTED_MAX_ROWS, replace=False))
    planted_score = scorer(Y_planted[ok], ok)
    rate, (lo, hi) = estimate_error_rate(log_score[~violating], planted_score, seed=seed)
    n_clean_side = int((~violating).sum())
    n_rank = int(round(rate * n_clean_side)) + int(violating.sum())
    order = np.lexsort((np.arange(N), log_score))
    flags = np.zeros(N, dtype=bool)
    flags[order[: min(n_rank, N)]] = True
    outside = violating & ~flags
    flags |= violating

    S = suggest(Y, np.flatnonzero(flags), model, P_knn, rules, 0.5 * (P_cooc + P_knn),
                progress=None if stage_progress is None else stage_progress("suggestions", "examples"))
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
