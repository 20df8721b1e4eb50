"""Outliers: examples far from their nearest neighbours in feature space.

The raw statistic is the mean distance to the ``n_neighbors`` nearest *other* examples
(sklearn ``NearestNeighbors.kneighbors()`` without a query, which leaves each point out of its
own neighbourhood). It works for every modality: pass embeddings with ``metric="cosine"``
(text, image) or standardised tabular features with ``metric="euclidean"``.
"""

from __future__ import annotations

import numpy as np

from dq_pipeline.issues.base import DetectorResult

DEFAULT_N_NEIGHBORS: int = 10
DEFAULT_METRIC: str = "cosine"
#: ``None`` = flag with the Tukey "far out" fence (see :data:`DEFAULT_IQR_FACTOR`); a float in
#: (0, 0.5] flags that fraction of examples with the largest k-NN distance instead.
DEFAULT_CONTAMINATION: float | None = None
#: Fence ``Q3 + factor * IQR`` on the k-NN mean distance. 3.0 is Tukey's "far out" fence: it
#: flags nothing on a compact cloud and adapts to the scale of any metric/modality.
DEFAULT_IQR_FACTOR: float = 3.0


def knn_mean_distance(X: np.ndarray, *, n_neighbors: int = DEFAULT_N_NEIGHBORS,
                      metric: str = DEFAULT_METRIC) -> np.ndarray:
    """Mean distance of each row of ``X`` (N, D) to its ``min(n_neighbors, N-1)`` nearest other rows.

    Returns an (N,) float64 array; zeros when N < 2.
    """
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X)
    n = X.shape[0]
    k = min(int(n_neighbors), n - 1)
    if k < 1:
        return np.zeros(n)
    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(X.reshape(n, -1))
    dist, _ = nn.kneighbors()  # no query: each point is excluded from its own neighbours
    return dist.mean(axis=1).astype(np.float64)


def find_outliers(
    X: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    metric: str = DEFAULT_METRIC,
    contamination: float | None = DEFAULT_CONTAMINATION,
    iqr_factor: float = DEFAULT_IQR_FACTOR,
) -> DetectorResult:
    """Flag examples whose k-NN mean distance is unusually large.

    Parameters
    ----------
    X : np.ndarray, shape (N, D)
        Features / embeddings.
    n_neighbors : int, default 10
        Neighbours averaged; reduced to N - 1 for tiny datasets (N < 2: nothing flagged).
    metric : str, default ``"cosine"``
        Any sklearn ``NearestNeighbors`` metric; ``"euclidean"`` for standardised tabular data.
    contamination : float or None, default None
        ``None``: flag distances above ``Q3 + iqr_factor * IQR`` (Tukey fence, no assumed
        outlier rate). A float in (0, 0.5]: flag the ``ceil(contamination * N)`` largest
        distances instead.
    iqr_factor : float, default 3.0
        Fence multiplier used when ``contamination`` is None.

    Returns
    -------
    DetectorResult
        ``scores`` (N,) in [0, 1], **low = outlier**: ``exp(-d / median(d))`` with ``d`` the
        k-NN mean distance (the form cleanlab uses for its k-NN out-of-distribution score);
        a typical example scores ``exp(-1) ~ 0.37``, an example at the nearest-neighbour
        distance 0 scores 1. ``flags``: ``d`` above the distance threshold.
        ``summary``: ``n_outliers``, ``rate``, ``threshold`` (distance), ``score_threshold``
        (flags are ``scores < score_threshold``), ``method``, ``metric``, ``n_neighbors``
        (effective), ``median_distance``.
    """
    X = np.asarray(X)
    n = X.shape[0]
    d = knn_mean_distance(X, n_neighbors=n_neighbors, metric=metric)
    k_eff = max(0, min(int(n_neighbors), n - 1))

    positive = d[d > 0]
    scale = float(np.median(d)) if n else 0.0
    if scale <= 0:
        scale = float(np.median(positive)) if positive.size else 1.0
    scores = np.exp(-d / scale)

    if n < 2:
        threshold = float("inf")
        method = "none (fewer than 2 examples)"
    elif contamination is None:
        q1, q3 = np.percentile(d, [25, 75])
        threshold = float(q3 + iqr_factor * (q3 - q1))
        method = f"iqr (Q3 + {iqr_factor:g} * IQR)"
    else:
        if not 0 < contamination <= 0.5:
            raise ValueError("contamination must be in (0, 0.5] or None")
        n_flag = int(np.ceil(contamination * n))
        # the n_flag-th largest distance; ties at the boundary are all flagged
        threshold = float(np.partition(d, n - n_flag)[n - n_flag])
        threshold = float(np.nextafter(threshold, -np.inf))
        method = f"contamination ({contamination:g})"
    flags = d > threshold

    summary = {
        "n_outliers": int(flags.sum()),
        "rate": float(flags.mean()) if n else 0.0,
        "threshold": threshold,
        "score_threshold": float(np.exp(-threshold / scale)) if np.isfinite(threshold) else 0.0,
        "method": method,
        "metric": metric,
        "n_neighbors": int(k_eff),
        "median_distance": float(np.median(d)) if n else 0.0,
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=None)
