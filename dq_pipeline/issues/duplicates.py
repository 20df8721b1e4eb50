"""Exact and near-duplicate examples, and duplicate groups whose tags disagree.

Two examples are linked when they share an *exact key* (a content hash the caller computes:
file-bytes hash, :func:`text_key` of a text, :func:`row_key` of a feature row) or when their
feature vectors lie within ``threshold`` of each other (``near=True``). Groups are the connected
components of these links (``scipy.sparse.csgraph.connected_components``), so A~B and B~C put
A, B and C in one group.

The near pairs come from the audit's shared neighbour graph (:mod:`dq_pipeline.neighbours`): the graph
pairs within the radius, completed by an exact float64 radius search of the rows whose k-th neighbour is
itself within the radius (members of a group larger than k), so with an exact graph the groups equal the
all-pairs result (:func:`_near_pass`, kept as the reference) without an N x N pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

if TYPE_CHECKING:
    from dq_pipeline.neighbours import NeighbourGraph

#: Default radius for near duplicates, in units of ``metric``. For ``"cosine"`` it is a cosine
#: *distance* (1 - cosine similarity): 0.05 links pairs with similarity >= 0.95. Measured:
#: EfficientNet-Lite0 features of re-encoded MIML photos lie at 0.002 and 0.020, the next
#: closest pair among images 1..120 at 0.119; MiniLM embeddings of GoEmotions texts differing
#: only in punctuation/spelling ("Weird flex but okay"/"... ok", "I love [NAME]"/"... .") at
#: 0.008-0.02, distinct short comments from 0.07 up.
DEFAULT_THRESHOLD: float = 0.05
DEFAULT_METRIC: str = "cosine"

DETAIL_COLUMNS = ["example_index", "group_id", "kind", "is_conflict", "group_size"]


def text_key(s: str) -> str:
    """Normalised text used as an exact-duplicate key: lowercase, whitespace runs collapsed, stripped.

    >>> text_key("  Hello\\n  World ")
    'hello world'
    """
    return " ".join(str(s).split()).lower()


def row_key(values: np.ndarray) -> str:
    """Hex SHA-1 of a numeric row (as float64), used as an exact-duplicate key for feature rows.

    ``-0.0`` and ``0.0`` hash equal, as do all NaNs, so rows that compare equal value-by-value
    (NaN treated as equal to NaN) get the same key.
    """
    row = np.asarray(values, dtype=np.float64).ravel() + 0.0  # -0.0 -> 0.0
    row = np.where(np.isnan(row), np.nan, row)  # one NaN bit pattern
    return hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest()


def _exact_edges(exact_keys: Sequence[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(exact_keys) != n:
        raise ValueError(f"exact_keys has {len(exact_keys)} entries, expected {n}")
    keys = pd.Series(list(exact_keys), dtype=object)
    present = keys.notna().to_numpy()
    idx = np.flatnonzero(present)
    codes, _ = pd.factorize(keys[present])
    # link every member of a key class to the first member of that class
    first = pd.Series(idx).groupby(codes).transform("min").to_numpy()
    keep = first != idx
    return first[keep], idx[keep]


def _near_pass(
    X: np.ndarray, threshold: float, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All-pairs reference (and the path of metrics the neighbour graph does not support): one chunked
    pass over pairwise distances (sklearn ``pairwise_distances_chunked``): nearest-other distance and pairs
    <= threshold."""
    from sklearn.metrics import pairwise_distances_chunked

    n = X.shape[0]
    nearest = np.full(n, np.inf)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []

    def reduce(chunk: np.ndarray, start: int) -> None:
        stop = start + chunk.shape[0]
        chunk[np.arange(chunk.shape[0]), np.arange(start, stop)] = np.inf  # exclude self
        nearest[start:stop] = chunk.min(axis=1)  # float64 buffer
        r, c = np.nonzero(chunk <= threshold)
        upper = c > r + start  # each unordered pair once
        rows.append(r[upper] + start)
        cols.append(c[upper])
        return None

    for _ in pairwise_distances_chunked(X, reduce_func=reduce, metric=metric):
        pass
    empty = np.empty(0, dtype=np.intp)
    r = np.concatenate(rows) if rows else empty
    c = np.concatenate(cols) if cols else empty
    return nearest, r.astype(np.intp), c.astype(np.intp)


def near_pairs(
    X: np.ndarray, threshold: float, metric: str, graph: NeighbourGraph | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nearest, a, b)``: each row's nearest-other distance (N,) and the pairs ``a[i] < b[i]`` of rows of X
    (N, D) within ``threshold``, from ``graph`` (built here when None). Rows whose k-th graph neighbour lies
    within the radius may have more near rows: they get an exact radius search, so a group larger than k is
    found whole."""
    from dq_pipeline.neighbours import DEFAULT_K, METRICS, build_neighbour_graph, prepare, radius_neighbours

    n = len(X)
    if graph is None:
        if metric not in METRICS:
            return _near_pass(X, threshold, metric)
        graph = build_neighbour_graph(X, k=DEFAULT_K, metric=metric, progress=progress)
    if graph.metric != metric or len(graph) != n:
        raise ValueError(f"the neighbour graph ({len(graph)} rows, {graph.metric}) does not match the "
                         f"{n} rows / {metric} of the near-duplicate search")
    if graph.k == 0:
        empty = np.empty(0, dtype=np.intp)
        return np.full(n, np.inf), empty, empty.copy()
    nearest = graph.distances[:, 0].copy()
    within = graph.distances <= threshold
    r, j = np.nonzero(within)
    a, b = r, graph.indices[r, j]
    full = np.flatnonzero(within[:, -1]) if graph.k < n - 1 else np.empty(0, dtype=np.intp)
    if len(full):  # more near rows than the graph holds: exact radius search of those rows only
        ra, rb, _ = radius_neighbours(prepare(X, metric), full, threshold, metric)
        a, b = np.concatenate([a, ra]), np.concatenate([b, rb])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0) if len(lo) else np.empty((0, 2), dtype=np.intp)
    return nearest, pairs[:, 0].astype(np.intp), pairs[:, 1].astype(np.intp)


def find_near_duplicates(
    X: np.ndarray | None,
    Y: np.ndarray,
    *,
    exact_keys: Sequence[Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    metric: str = DEFAULT_METRIC,
    near: bool = True,
    graph: NeighbourGraph | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DetectorResult:
    """Group exact and near-duplicate examples and flag groups with conflicting tags.

    Parameters
    ----------
    X : np.ndarray, shape (N, D), or None
        Features / embeddings used for the near-duplicate search and the score
        (may be None when ``near=False``).
    Y : np.ndarray, shape (N, K), 0/1
        Given tags; a group *conflicts* when its members' tag sets are not all equal.
    exact_keys : sequence of length N, optional
        Content keys (hashes, :func:`text_key`, :func:`row_key`); equal keys are exact
        duplicates. ``None`` entries never match anything.
    threshold : float, default :data:`DEFAULT_THRESHOLD`
        Pairs with ``metric`` distance ``<= threshold`` are near duplicates.
    metric : str, default ``"cosine"``
        Any metric accepted by :func:`sklearn.metrics.pairwise_distances`; use
        ``"euclidean"`` for standardised tabular features (and scale ``threshold``).
    near : bool, default True
        ``False`` skips the distance computation entirely (exact keys only).
    graph : NeighbourGraph or None
        The audit's shared neighbour graph of X (same ``metric``); None builds one (cosine/euclidean;
        other metrics use the all-pairs pass). See :func:`near_pairs`.
    progress : callable or None
        ``progress(done, total)``: rows searched, when the graph is built here.

    Returns
    -------
    DetectorResult
        ``scores`` (N,): low = duplicate. For ``metric="cosine"``: the cosine distance to the
        nearest other example (= 1 - max cosine similarity), clipped to [0, 1]; for other
        metrics ``1 - exp(-d / m)`` with d the nearest-other distance and m the median of
        the positive d. Exact duplicates score 0. With ``near=False`` non-members score 1.
        ``flags`` (N,): member of a duplicate group.
        ``details``: one row per group member, columns ``example_index``, ``group_id``
        (0..G-1, ordered by each group's smallest member index), ``kind`` (``'exact'`` when
        all members share one exact key, else ``'near'``), ``is_conflict``, ``group_size``.
        ``summary``: ``n_groups``, ``n_examples_in_groups``, ``n_conflict_groups``,
        ``n_exact_groups``, ``threshold``, ``metric``, ``near``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    Y = np.asarray(Y)
    n = len(Y)
    if X is not None and len(X) != n:
        raise ValueError(f"X has {len(X)} rows but Y has {n}")
    if exact_keys is not None:
        exact_keys = list(exact_keys)

    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    exact_member = np.zeros(n, dtype=bool)
    if exact_keys is not None:
        a, b = _exact_edges(exact_keys, n)
        src.append(a)
        dst.append(b)
        exact_member[a] = exact_member[b] = True

    scores = np.ones(n)
    if near and n >= 2:
        if X is None:
            raise ValueError("near=True needs features X")
        Xf = np.asarray(X).reshape(n, -1)
        if Xf.dtype not in (np.float32, np.float64):
            Xf = Xf.astype(np.float64)
        nearest, a, b = near_pairs(Xf, threshold, metric, graph=graph, progress=progress)
        src.append(a)
        dst.append(b)
        if metric == "cosine":
            scores = np.clip(nearest, 0.0, 1.0)
        else:
            positive = nearest[np.isfinite(nearest) & (nearest > 0)]
            scale = float(np.median(positive)) if positive.size else 1.0
            scores = 1.0 - np.exp(-nearest / scale)
    scores[exact_member] = 0.0

    s = np.concatenate(src) if src else np.empty(0, dtype=np.intp)
    d = np.concatenate(dst) if dst else np.empty(0, dtype=np.intp)
    graph = coo_matrix((np.ones(len(s), dtype=np.int8), (s, d)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)

    sizes = np.bincount(labels, minlength=labels.max() + 1 if n else 0)
    member = sizes[labels] >= 2 if n else np.zeros(0, dtype=bool)
    idx = np.flatnonzero(member)
    details = pd.DataFrame(
        {
            "example_index": idx,
            "component": labels[idx],
        }
    )
    if len(details):
        # stable ids: groups ordered by their smallest member index (idx is ascending)
        order = pd.unique(details["component"])
        details["group_id"] = details["component"].map({c: g for g, c in enumerate(order)})
        rowkey = pd.Series([row.tobytes() for row in np.ascontiguousarray(Y[idx]).astype(np.int8)])
        details["is_conflict"] = (
            rowkey.groupby(details["group_id"].to_numpy()).transform("nunique").to_numpy() > 1
        )
        if exact_keys is not None:
            ek = pd.Series([exact_keys[i] for i in idx], dtype=object)
            same = ek.groupby(details["group_id"].to_numpy()).transform(
                lambda s: s.notna().all() and s.nunique() == 1
            )
            details["kind"] = np.where(same.to_numpy(dtype=bool), "exact", "near")
        else:
            details["kind"] = "near"
        details["group_size"] = sizes[details["component"].to_numpy()]
        details = details.sort_values(["group_id", "example_index"], kind="stable")
    else:
        details = details.assign(group_id=[], kind=[], is_conflict=[], group_size=[])
    details = details[DETAIL_COLUMNS].reset_index(drop=True).astype(
        {"example_index": "int64", "group_id": "int64", "kind": object, "is_conflict": bool,
         "group_size": "int64"}
    )

    groups = details.drop_duplicates("group_id")
    summary = {
        "n_groups": int(len(groups)),
        "n_examples_in_groups": int(len(details)),
        "n_conflict_groups": int(groups["is_conflict"].sum()),
        "n_exact_groups": int((groups["kind"] == "exact").sum()),
        "threshold": float(threshold),
        "metric": metric,
        "near": bool(near),
    }
    return DetectorResult(scores=scores, flags=member, summary=summary, details=details)
