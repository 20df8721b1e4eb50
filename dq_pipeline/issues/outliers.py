"""Outliers: examples far from their nearest neighbours in feature space.

The raw statistic is the mean distance to the ``n_neighbors`` nearest *other* examples, read from
the audit's shared neighbour graph (:mod:`dq_pipeline.neighbours`; each point is left out of its own
neighbourhood, float64 distances). It works for every modality: pass embeddings with ``metric="cosine"``
(text, image) or standardised tabular features with ``metric="euclidean"``.

How many to flag is *calibrated* on the data (default ``method="calibrated"``): the bulk of the
log distances is fitted by a normal "null" with robust estimates — centre = median, scale =
``(q90 - median) / 1.2816`` (the upper tail's own spread, so a dataset whose distances are naturally
right-skewed gets a wider null instead of more flags) — and examples more than ``z_threshold`` null
standard deviations above the centre are flagged. A compact cloud gets few or no flags; junk far out in
the tail is flagged however many examples there are. The flags are always the top of the ranking (the
largest distances = the lowest scores). ``z_threshold`` (per metric: :data:`DEFAULT_Z_THRESHOLDS`) and the tail
quantile were chosen on the validation datasets of ``bench/bench_outliers.py`` (bundled MIML photos and 800 other
MIML photos, the GoEmotions sample, MULAN emotions/flags, with planted junk) and reported on others
(``bench/results/outliers.md``).

A second, per-example statistic (``extra``, HIGH = more outlying) can be added where the features alone miss
junk: for texts, :func:`dq_pipeline.embed.text.pieces_per_word` — how far the embedder's vocabulary is from
reading the text as words (base64, hex, another script, a repeated character). Embeddings of such strings
cluster with each other and with short comments, so their k-NN distance is ordinary. The statistic gets its
own robust log-normal null and threshold (``extra_z_threshold``); the two are combined into one *effective
distance*: where the statistic alone would flag and says more than the distance does, the distance whose z equals
the statistic's z shifted so that both thresholds coincide; elsewhere the k-NN distance itself (:func:`effective_distance`).
Every flag rule and the score work on it, so flags stay the top of the ranking; without ``extra`` the effective
distance is the k-NN distance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dq_pipeline.issues.base import DetectorResult

if TYPE_CHECKING:
    from dq_pipeline.neighbours import NeighbourGraph

DEFAULT_N_NEIGHBORS: int = 10
#: Rows per neighbour search when progress is reported (:func:`knn_mean_distance`).
PROGRESS_BLOCK: int = 4096
DEFAULT_METRIC: str = "cosine"
#: ``"calibrated"`` (robust log-normal null + a z threshold, see :func:`flag_by_null`) or ``"iqr"`` (the
#: former default: Tukey fence ``Q3 + iqr_factor * IQR`` on the distance).
DEFAULT_METHOD: str = "calibrated"
METHODS: tuple[str, ...] = ("calibrated", "iqr")
#: Flag examples this many robust standard deviations above the median log distance, per metric (embeddings:
#: cosine; tabular: euclidean; others: DEFAULT_Z_THRESHOLD). Chosen on the validation datasets of
#: bench/bench_outliers.py by its ``choose_thresholds`` (the rule is in that function's docstring; 2026-12-07, with a
#: second image validation set: cosine 2.5 with texts' extra z 5, validation recall 93.3% at 0.3% clean flagged;
#: euclidean 3.5, 100% at 0.7%; both were 2.75, one value for every metric, before).
DEFAULT_Z_THRESHOLDS: dict[str, float] = {"cosine": 2.5, "euclidean": 3.5}
DEFAULT_Z_THRESHOLD: float = 2.75
#: Quantile of the log distance that sets the null's scale: ``(q - median) / Phi^-1(q)``. Robust while
#: fewer than ``1 - q`` = 10% of the examples are outliers (in practice a few %: see the bench).
TAIL_QUANTILE: float = 0.90
#: Threshold of the ``extra`` statistic's own robust z (texts: tokenizer pieces per word), chosen with the cosine
#: z_threshold (above): on the bundled GoEmotions sample + 16 junk texts at z 2.5, 4.0 flags 100% of the junk and
#: 1.2% of the comments, 5.0 100% and 1.0%, 6.0 93.8% and 0.8%.
DEFAULT_EXTRA_Z_THRESHOLD: float = 5.0
#: What each ``flagged_by`` value (``details``; ``examples.outlier_reason``) means, as the UI and the review app say it.
OUTLIER_REASONS: dict[str, str] = {"knn_distance": "far from its neighbours", "pieces_per_word": "unreadable as words"}
#: ``None`` = flag with ``method``; a float in (0, 0.5] flags that fraction of examples with the largest
#: k-NN distance instead.
DEFAULT_CONTAMINATION: float | None = None
#: Fence ``Q3 + factor * IQR`` on the k-NN mean distance, used by ``method="iqr"`` only.
DEFAULT_IQR_FACTOR: float = 3.0
#: Robust normal scale from a median absolute deviation.
_MAD_TO_SD: float = 1.4826


def knn_mean_distance(X: np.ndarray, *, n_neighbors: int = DEFAULT_N_NEIGHBORS,
                      metric: str = DEFAULT_METRIC,
                      progress: Callable[[int, int], None] | None = None,
                      graph: NeighbourGraph | None = None) -> np.ndarray:
    """Mean distance of each row of ``X`` (N, D) to its ``min(n_neighbors, N-1)`` nearest other rows.

    From ``graph`` (a :class:`~dq_pipeline.neighbours.NeighbourGraph` of X with at least that many
    neighbours and the same ``metric``) when given, else from one built here
    (:func:`~dq_pipeline.neighbours.build_neighbour_graph`, ``method="auto"``; metrics other than cosine and
    euclidean fall back to sklearn's brute force). Distances are float64. Returns an (N,) float64 array;
    zeros when N < 2. ``progress(done, total)``: rows searched so far.
    """
    from dq_pipeline.neighbours import METRICS, build_neighbour_graph

    n = len(X) if graph is None else len(graph)
    k = min(int(n_neighbors), n - 1)
    if k < 1:
        return np.zeros(n)
    if graph is None:
        if metric not in METRICS:
            return _sklearn_knn_mean_distance(X, k, metric, progress)
        graph = build_neighbour_graph(X, k=k, metric=metric, progress=progress)
    _check_graph(graph, n, k, metric)
    return graph.distances[:, :k].mean(axis=1)


def _check_graph(graph: NeighbourGraph, n: int, k: int, metric: str) -> None:
    if graph.metric != metric:
        raise ValueError(f"the neighbour graph is {graph.metric}, the detector asked for {metric}")
    if len(graph) != n or graph.k < k:
        raise ValueError(f"the neighbour graph has {len(graph)} rows x {graph.k} neighbours; need {n} x {k}")


def _sklearn_knn_mean_distance(X: np.ndarray, k: int, metric: str,
                               progress: Callable[[int, int], None] | None) -> np.ndarray:
    """Brute-force sklearn k-NN mean distance (metrics the neighbour graph does not support)."""
    from sklearn.neighbors import NearestNeighbors

    # float64: float32 embeddings would give float32 distances, whose ~1e-7 resolution makes hundreds of
    # distinct examples tie on 50k texts
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    X = X.reshape(n, -1)
    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(X)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, PROGRESS_BLOCK):
        rows = np.arange(start, min(start + PROGRESS_BLOCK, n))
        dist, idx = nn.kneighbors(X[rows], n_neighbors=k + 1)
        # drop the row itself (or, where more than k + 1 rows coincide, one of its zero-distance twins)
        own = idx == rows[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(len(rows)), drop] = False
        out[rows] = dist[keep].reshape(len(rows), k).mean(axis=1)
        if progress is not None:
            progress(int(rows[-1]) + 1, n)
    return out


def robust_log_null(values: np.ndarray, tail_quantile: float = TAIL_QUANTILE) -> tuple[np.ndarray, float, float]:
    """Robust normal fit to ``log(values)`` (values >= 0, HIGH = more outlying).

    Returns ``(z, center, scale)``: ``z`` (N,) = ``(log v - center) / scale``, ``center`` = median of the
    logs, ``scale = (quantile(log v, tail_quantile) - center) / Phi^-1(tail_quantile)`` (falling back to
    ``1.4826 * MAD``, then the standard deviation, when that is 0). Zeros are floored at half the smallest
    positive value. When the values do not vary, every z is 0 and ``scale`` is ``inf``.
    """
    from scipy.stats import norm

    v = np.asarray(values, dtype=np.float64)
    pos = v[v > 0]
    if v.size == 0 or pos.size == 0:
        return np.zeros(v.size), 0.0, float("inf")
    s = np.log(np.maximum(v, pos.min() / 2))
    center = float(np.median(s))
    scale = (float(np.quantile(s, tail_quantile)) - center) / float(norm.ppf(tail_quantile))
    if not scale > 0:
        scale = _MAD_TO_SD * float(np.median(np.abs(s - center)))
    if not scale > 0:
        scale = float(s.std())
    if not scale > 0:
        return np.zeros(v.size), center, float("inf")
    return (s - center) / scale, center, scale


def flag_by_null(values: np.ndarray, z_threshold: float = DEFAULT_Z_THRESHOLD) -> np.ndarray:
    """Flags (N,) bool: ``values`` (N,) >= 0 (HIGH = more outlying) whose robust log-normal z
    (:func:`robust_log_null`) exceeds ``z_threshold``. Monotone in ``values``: the flagged set is always the
    largest values."""
    z, _, _ = robust_log_null(values)
    return z > z_threshold


def effective_distance(d: np.ndarray, extra: np.ndarray, z_threshold: float,
                       extra_z_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Combine k-NN distances ``d`` (N,) and a second statistic ``extra`` (N,) >= 0 (both HIGH = outlying).
    Where ``extra``'s robust z (:func:`robust_log_null`) exceeds ``extra_z_threshold`` and, shifted by
    ``extra_z_threshold - z_threshold``, also the distance's z, the distance that shifted z maps to on the
    distance's null (``exp(center + scale * z)``, which is above the distance threshold) plus ``1e-6 * d`` (equal
    statistics ordered by distance); elsewhere ``d`` unchanged. Returns ``(effective (N,), taken from extra (N,)
    bool)``."""
    z_d, center, scale = robust_log_null(d)
    if not np.isfinite(scale):  # the distances do not vary: no scale to map onto, keep them
        return d.copy(), np.zeros(len(d), dtype=bool)
    z_e = robust_log_null(extra)[0] - (extra_z_threshold - z_threshold)
    take = (z_e > z_threshold) & (z_e > z_d)
    out = d.copy()
    out[take] = np.exp(center + scale * z_e[take]) + 1e-6 * d[take]
    return out, take


def find_outliers(
    X: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    metric: str = DEFAULT_METRIC,
    method: str = DEFAULT_METHOD,
    z_threshold: float | None = None,
    contamination: float | None = DEFAULT_CONTAMINATION,
    iqr_factor: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    graph: NeighbourGraph | None = None,
    extra: np.ndarray | None = None,
    extra_z_threshold: float = DEFAULT_EXTRA_Z_THRESHOLD,
    extra_name: str = "extra",
) -> DetectorResult:
    """Flag examples whose k-NN mean distance (or ``extra`` statistic) is unusually large.

    Parameters
    ----------
    X : np.ndarray, shape (N, D)
        Features / embeddings.
    n_neighbors : int, default 10
        Neighbours averaged; reduced to N - 1 for tiny datasets (N < 2: nothing flagged).
    metric : str, default ``"cosine"``
        Any sklearn ``NearestNeighbors`` metric; ``"euclidean"`` for standardised tabular data.
    method : ``"calibrated"`` (default) or ``"iqr"``
        ``"calibrated"``: :func:`flag_by_null` on the distances (robust log-normal null, flag above
        ``z_threshold``). ``"iqr"``: distances above ``Q3 + iqr_factor * IQR`` (the former default).
    z_threshold : float or None, default None
        Calibrated threshold in robust null standard deviations of the log distance; None = the metric's
        default (:data:`DEFAULT_Z_THRESHOLDS`).
    contamination : float or None, default None
        A float in (0, 0.5] overrides ``method``: flag the ``ceil(contamination * N)`` largest distances.
    iqr_factor : float or None
        Fence multiplier of ``method="iqr"`` (None = 3.0); ignored by the calibrated method.
    progress : callable or None
        ``progress(done, total)`` as the neighbour search goes (rows searched).
    graph : NeighbourGraph or None
        The audit's shared neighbour graph of X (same ``metric``, at least ``n_neighbors`` neighbours); None
        builds one (:func:`~dq_pipeline.neighbours.build_neighbour_graph`).
    extra : np.ndarray or None, shape (N,)
        A second statistic >= 0, HIGH = more outlying (texts: :func:`dq_pipeline.embed.text.pieces_per_word`),
        flagged above ``extra_z_threshold`` robust z of its own log-normal null; combined with the distance into
        the effective distance every rule works on (module docstring). ``extra_name`` names it in the summary.

    Returns
    -------
    DetectorResult
        ``scores`` (N,) in [0, 1], **low = outlier**: ``exp(-d / median(d))`` with ``d`` the effective
        distance (the k-NN mean distance, see ``extra``; the median is the k-NN distance's) (the form cleanlab uses for its k-NN out-of-distribution score);
        continuous and strictly decreasing in ``d``, so only equal distances tie; a typical example
        scores ``exp(-1) ~ 0.37``, an example at distance 0 scores 1. ``flags``: ``d`` above the distance
        threshold, i.e. exactly the examples with ``scores < score_threshold`` — the top of the ranking.
        ``details``: one row per flagged example — ``example_index``, ``knn_distance``, the extra statistic's value
        (column named ``extra_name``; NaN without one) and ``flagged_by`` ('knn_distance' or ``extra_name``).
        ``summary``: ``n_outliers``, ``rate``, ``threshold`` (distance), ``score_threshold``, ``method``,
        ``metric``, ``n_neighbors`` (effective), ``median_distance``; calibrated also ``z_threshold``,
        ``null_center`` / ``null_scale`` (of log d) and ``expected_by_chance`` (examples the fitted null
        alone puts above the threshold, ``N * (1 - Phi(z_threshold))``: compare with ``n_outliers``); with
        ``extra``: ``extra_statistic`` (its name), ``extra_z_threshold`` and ``n_outliers_by_extra`` (flagged
        examples whose effective distance comes from ``extra``, not from the k-NN distance).
    """
    if z_threshold is None:
        z_threshold = DEFAULT_Z_THRESHOLDS.get(metric, DEFAULT_Z_THRESHOLD)
    n = len(X) if graph is None else len(graph)
    d = knn_mean_distance(X, n_neighbors=n_neighbors, metric=metric, progress=progress, graph=graph)
    k_eff = max(0, min(int(n_neighbors), n - 1))
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    by_extra = np.zeros(n, dtype=bool)
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64)
        if extra.shape != (n,) or not np.isfinite(extra).all() or (extra < 0).any():
            raise ValueError(f"extra must be {n} finite values >= 0, one per example; got shape {extra.shape}")
        e, by_extra = effective_distance(d, extra, z_threshold, extra_z_threshold)
    else:
        e = d

    positive = d[d > 0]
    scale = float(np.median(d)) if n else 0.0
    if scale <= 0:
        scale = float(np.median(positive)) if positive.size else 1.0
    scores = np.exp(-e / scale)

    extra_summary: dict = {}
    if n < 2:
        threshold = float("inf")
        label = "none (fewer than 2 examples)"
    elif contamination is not None:
        if not 0 < contamination <= 0.5:
            raise ValueError("contamination must be in (0, 0.5] or None")
        n_flag = int(np.ceil(contamination * n))
        # the n_flag-th largest distance; ties at the boundary are all flagged
        threshold = float(np.partition(e, n - n_flag)[n - n_flag])
        threshold = float(np.nextafter(threshold, -np.inf))
        label = f"contamination ({contamination:g})"
    elif method == "iqr":
        factor = DEFAULT_IQR_FACTOR if iqr_factor is None else float(iqr_factor)
        q1, q3 = np.percentile(e, [25, 75])
        threshold = float(q3 + factor * (q3 - q1))
        label = f"iqr (Q3 + {factor:g} * IQR)"
    else:
        from scipy.stats import norm

        z, center, null_scale = robust_log_null(d)  # the null of the k-NN distance
        flagged = (z > z_threshold) | by_extra  # by_extra: e mapped above the threshold on that null
        # just below the smallest flagged distance (flags <=> e > threshold <=> score < score_threshold)
        threshold = float(np.nextafter(float(e[flagged].min()), -np.inf)) if flagged.any() else float(e.max())
        label = f"calibrated (robust log-normal null, z > {z_threshold:g})"
        extra_summary = {"z_threshold": float(z_threshold), "null_center": center,
                 "null_scale": null_scale if np.isfinite(null_scale) else None,  # None: distances do not vary
                 "expected_by_chance": float(n * norm.sf(z_threshold))}
    flags = e > threshold

    summary = {
        "n_outliers": int(flags.sum()),
        "rate": float(flags.mean()) if n else 0.0,
        "threshold": threshold,
        # flags <=> score < score_threshold (just above the highest flagged score: exp() of two distances a float
        # apart may round to one score)
        "score_threshold": (float(np.nextafter(scores[flags].max(), np.inf)) if flags.any()
                            else float(np.exp(-threshold / scale)) if np.isfinite(threshold) else 0.0),
        "method": label,
        "metric": metric,
        "n_neighbors": int(k_eff),
        "median_distance": float(np.median(d)) if n else 0.0,
        **extra_summary,
    }
    if extra is not None:
        summary.update({"extra_statistic": extra_name, "extra_z_threshold": float(extra_z_threshold),
                        "n_outliers_by_extra": int((flags & by_extra).sum())})
    import pandas as pd

    rows = np.flatnonzero(flags)
    details = pd.DataFrame({
        "example_index": rows.astype(np.int64),
        "knn_distance": d[rows],
        extra_name if extra is not None else "extra": extra[rows] if extra is not None else np.full(len(rows), np.nan),
        "flagged_by": np.where(by_extra[rows], extra_name, "knn_distance").astype(object),
    })
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)
