"""One k-nearest-neighbour graph per audit, shared by the outlier, near-duplicate and label-vote detectors.

:func:`build_neighbour_graph` returns each row's ``k`` nearest *other* rows of X (N, D) with their
distances. The search runs in float32, with torch (brute force: a matrix product and ``topk`` per block of
rows = exact) or hnswlib (HNSW = approximate), over-fetching a few candidates; the distances of the returned pairs are then
recomputed in float64 (cosine = ``1 - u.v`` of float64 unit vectors, as ``|u - v|^2 / 2`` so identical rows
are at exactly 0; euclidean = norm of the difference)
and each row is re-sorted by (distance, index), so float32 rounding never reorders or ties neighbours.
On a CPU that multiplies bfloat16 natively (AMX or AVX512-BF16) the exact cosine search takes its candidates from
bfloat16 products and *certifies* them (:func:`_certified`): a row whose k-th re-ranked similarity exceeds its
worst candidate's bfloat16 score by more than the rounding can move any score is exact; the other rows (0.5% of
the full GoEmotions) are searched again in float32.
The library choice was measured in ``bench/bench_neighbours.py`` (``bench/results/neighbours.md``).

``method="auto"`` is exact up to :data:`AUTO_EXACT_MAX_ROWS` rows (deterministic; the tests and every
bundled dataset stay there) and HNSW above, where the exact search grows as N^2. The approximate graph
carries a ``recall`` estimate: recall@k against the exact search of :data:`RECALL_SAMPLE` random rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from dq_pipeline.hardware import native_bf16

METRICS: tuple[str, ...] = ("cosine", "euclidean")
METHODS: tuple[str, ...] = ("auto", "exact", "hnsw")
DEFAULT_K: int = 15
#: ``method="auto"``: exact search up to this many rows, HNSW above (measured: bench/results/neighbours.md).
AUTO_EXACT_MAX_ROWS: int = 60_000
#: Query rows per search call (bounds memory to ``BLOCK x (k + extra)`` results; progress after each).
BLOCK: int = 4096
#: float64 values of the (rows, candidates, D) difference array of the re-ranking at a time (512 KB, so it stays in
#: the core's cache; the block size does not change the distances).
PAIR_BLOCK: int = 1 << 16
#: float32 scores per exact-search block (block rows x N; 256 MB).
FLAT_BLOCK_FLOATS: int = 64 << 20
#: Extra float32 candidates fetched per row before the float64 re-ranking.
EXTRA_CANDIDATES: int = 8
#: Columns per chunk of the exact search's two-stage top-m selection (:func:`_top_m`).
TOPK_CHUNK: int = 256

#: HNSW parameters (hnswlib): links per node, build and search beam widths.
HNSW_M: int = 16
HNSW_EF_CONSTRUCTION: int = 80
HNSW_EF_SEARCH: int = 96
#: efSearch is raised from HNSW_EF_SEARCH in steps of x HNSW_EF_STEP (up to HNSW_EF_MAX) until the recall@k of
#: RECALL_SAMPLE tuning rows reaches this. Search time grows about in proportion to efSearch, so the steps are small:
#: with doubling, a 1M-row graph whose recall at 96 was 0.969 searched at 192, twice the time, for 0.001 more than
#: the target. (faiss's IndexHNSWFlat reached only 0.75-0.77 on 1M synthetic 64-d rows at any efSearch with M=16:
#: hence hnswlib.)
HNSW_TARGET_RECALL: float = 0.97
HNSW_EF_MAX: int = 1024
HNSW_EF_STEP: float = 1.25
#: Query rows whose exact neighbours estimate an approximate graph's recall.
RECALL_SAMPLE: int = 500


@dataclass(frozen=True)
class NeighbourGraph:
    """Each row's ``k`` nearest other rows of X (N, D).

    ``indices`` (N, k) int64 and ``distances`` (N, k) float64, ascending per row (ties by index);
    ``metric`` ("cosine" = 1 - cosine similarity, or "euclidean"); ``method`` says how it was searched;
    ``recall`` = estimated recall@k against the exact search (None for an exact graph); ``seconds`` = build
    time.
    """

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    method: str
    recall: float | None = None
    seconds: float = 0.0

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @cached_property
    def fingerprint(self) -> str:
        """Content key of the graph (indices, distances, metric): detectors that read it key their cache on it."""
        from dq_pipeline.result_cache import fingerprint

        return fingerprint(self.indices, self.distances, self.metric)


def prepare(X: np.ndarray, metric: str) -> np.ndarray:
    """(N, D) float64 rows to compare: unit vectors for cosine (all-zero rows stay zero, so their cosine
    distance to anything is 1, as in sklearn), the rows themselves for euclidean."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1)
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"features row {row}, column {col} is {X[row, col]}: neighbour search needs finite values")
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(X)


def pair_distances(Z: np.ndarray, rows: np.ndarray, cols: np.ndarray, metric: str,
                   zero: np.ndarray | None = None) -> np.ndarray:
    """float64 distances between rows ``rows`` (n,) and the candidates ``cols`` (n, m) of prepared ``Z``.

    Cosine: ``1 - u.v`` of the unit vectors, computed as ``|u - v|^2 / 2`` (equal for unit vectors, and exactly
    0 for identical rows instead of ~1e-16); 1 where either row is all zeros (as sklearn). ``zero``: (N,) bool,
    Z's all-zero rows (:func:`zero_rows`), for callers that re-rank block after block; found here if None."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    sq = np.empty(cols.shape, dtype=np.float64)
    step = max(1, PAIR_BLOCK // max(1, cols.shape[1] * Z.shape[1]))  # bounds the (n, m, D) difference array
    for s in range(0, len(rows), step):
        diff = Z[cols[s:s + step]]  # a gathered copy: subtract in place
        diff -= Z[rows[s:s + step]][:, None, :]
        sq[s:s + step] = np.einsum("nmd,nmd->nm", diff, diff)
    if metric == "cosine":
        zero = zero_rows(Z) if zero is None else zero
        d = np.clip(0.5 * sq, 0.0, 2.0)
        if zero.any():
            d[zero[rows][:, None] | zero[cols]] = 1.0
        return d
    return np.sqrt(sq)


def zero_rows(Z: np.ndarray) -> np.ndarray:
    """(N,) bool: the all-zero rows of Z (N, D)."""
    return ~Z.any(axis=1)


def _rerank(Z: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int, metric: str,
            zero: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 re-ranking of candidate lists (n, m) (-1 = none) for query rows ``rows``: drop the row itself
    (or, where it is not among the candidates, the last of its k + 1 nearest: a zero-distance twin when more
    than k + 1 rows coincide), keep the k nearest by (distance, index)."""
    n = len(rows)
    missing = cand < 0
    safe = np.where(missing, 0, cand)
    dist = pair_distances(Z, rows, safe, metric, zero)
    dist[missing] = np.inf
    order = np.lexsort((safe, dist), axis=-1)  # by distance, ties by index
    safe = np.take_along_axis(safe, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    own = safe[:, : k + 1] == rows[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones((n, k + 1), dtype=bool)
    keep[np.arange(n), drop] = False
    idx = safe[:, : k + 1][keep].reshape(n, k)
    d = dist[:, : k + 1][keep].reshape(n, k)
    return idx.astype(np.int64), d


def _search_all(index, Z: np.ndarray, Z32: np.ndarray, k: int, metric: str,
                progress: Callable[[int, int], None] | None, rows: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(Z)) if rows is None else rows
    n_q = len(rows)
    m = min(k + 1 + EXTRA_CANDIDATES, len(Z))
    indices = np.empty((n_q, k), dtype=np.int64)
    distances = np.empty((n_q, k), dtype=np.float64)
    zero = zero_rows(Z) if metric == "cosine" else None  # once, not per block
    for start in range(0, n_q, BLOCK):
        q = rows[start:start + BLOCK]
        scores, cand = index.search(Z32[q], m)
        idx, dist = _rerank(Z, q, cand, k, metric, zero)
        if getattr(index, "bf16", False) and m < len(Z) and k > 0:
            redo = np.flatnonzero(~_certified(index, q, scores, dist))
            if len(redo):  # candidates that may miss a nearer row: search those rows again in float32
                _, cand = index.search(Z32[q[redo]], m, float32=True)
                idx[redo], dist[redo] = _rerank(Z, q[redo], cand, k, metric, zero)
            index.redone += len(redo)
        indices[start:start + len(q)], distances[start:start + len(q)] = idx, dist
        if progress is not None:
            progress(start + len(q), n_q)
    return indices, distances


class _HnswIndex:
    """hnswlib's HNSW graph behind faiss's ``search(queries, m) -> (distances, indices)`` call, built with
    ``seed`` (hnswlib's ``random_seed``) in blocks so the build reports progress (the first half of ``progress``).

    hnswlib rather than faiss ``IndexHNSWFlat``: on 1M synthetic 64-d rows faiss's graph stayed at recall@15
    0.77 whatever the efSearch (2,002 s), hnswlib reached 0.993 in 129 s on the same parameters
    (``bench/results/neighbours.md``)."""

    def __init__(self, Z32: np.ndarray, metric: str, seed: int,
                 progress: Callable[[int, int], None] | None) -> None:
        import hnswlib

        n = len(Z32)
        self.index = hnswlib.Index(space="ip" if metric == "cosine" else "l2", dim=Z32.shape[1])
        self.index.init_index(max_elements=n, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=seed)
        step = 4 * BLOCK
        for start in range(0, n, step):
            stop = min(start + step, n)
            self.index.add_items(Z32[start:stop], np.arange(start, stop))
            if progress is not None:
                progress(stop // 2, n)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(int(ef))

    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        labels, dist = self.index.knn_query(queries, k=m)
        return dist, labels.astype(np.int64)


class _FlatIndex:
    """Exact (brute-force) search with torch: a block of query rows times all rows (one matrix product), then the
    m best per row (:func:`_top_m`); the same ``search(queries, m) -> (scores, indices)`` call as the HNSW index.
    The query block is sized so its (block, N) score matrix stays within :data:`FLAT_BLOCK_FLOATS`.

    torch rather than faiss's ``IndexFlatIP``/``IndexFlatL2``: on the full GoEmotions (54,263 x 384, 2 cores)
    the same search took 10 s against faiss's 28 s, whose per-row heaps, not the product (7 s), set its pace
    (``bench/results/neighbours.md``).

    ``bf16`` (cosine only): the products in bfloat16 with float32 sums (about 2.7x faster where the CPU has AMX);
    ``slack(rows)`` then bounds how far a bfloat16 score of those rows can be from the float64 similarity."""

    def __init__(self, Z32: np.ndarray, metric: str, bf16: bool = False, Z: np.ndarray | None = None) -> None:
        import torch

        self.torch = torch
        self.metric = metric
        self.n = len(Z32)
        # rows padded to a multiple of TOPK_CHUNK (their scores set to -inf) so _top_m selects on views
        pad = (-self.n) % TOPK_CHUNK
        self.base = torch.from_numpy(np.vstack([Z32, np.zeros((pad, Z32.shape[1]), np.float32)]) if pad else Z32)
        # cosine: rank by q.x of unit vectors; euclidean: by 2 q.x - |x|^2 (= |q|^2 - |q - x|^2, |q|^2 fixed per row)
        self.minus_sq = -(self.base * self.base).sum(dim=1)[None, :] if metric == "euclidean" else None
        if self.minus_sq is not None and pad:
            self.minus_sq[:, self.n:] = float("-inf")
        self.bf16 = bool(bf16) and metric == "cosine" and Z is not None
        self.redone = 0  # rows the bf16 candidates could not certify, searched again in float32
        if self.bf16:
            self.low = self.base.to(torch.bfloat16)
            # each row's rounding error |bf16(z) - z| against the float64 unit vector
            self.err = np.linalg.norm(self.low[:self.n].to(torch.float64).numpy() - Z, axis=1)
            d = Z.shape[1]
            # float32 sums of d exact bf16 x bf16 products: relative error at most d u / (1 - d u), twice for safety
            self.gamma = 2.0 * d * 2.0 ** -24 / (1.0 - d * 2.0 ** -24)

    def slack(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) bound on |bf16 score - u.v| of those query rows against any row v:
        |q.e_v + e_q.v + e_q.e_v| + the float32 sums' error, with e = the rows' bf16 rounding errors."""
        e, e_max = self.err[rows], float(self.err.max())
        return e + e_max + e * e_max + self.gamma * (1.0 + e) * (1.0 + e_max) + 1e-12

    def search(self, queries: np.ndarray, m: int, float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) (len(queries), m) of the m best rows per query (scores: larger = nearer; unsorted);
        ``float32``: float32 products even where the index has bfloat16 ones."""
        torch = self.torch
        n = len(self.base)
        padded = n > self.n
        step = max(1, min(len(queries), FLAT_BLOCK_FLOATS // max(1, n)))
        scores = np.empty((len(queries), m), dtype=np.float32)
        found = np.empty((len(queries), m), dtype=np.int64)
        low = self.bf16 and not float32
        base = self.low if low else self.base
        with torch.inference_mode():
            for s in range(0, len(queries), step):
                q = torch.from_numpy(np.ascontiguousarray(queries[s:s + step]))
                if low:
                    G = q.to(torch.bfloat16) @ base.T
                elif self.minus_sq is None:
                    G = q @ base.T
                else:
                    G = torch.addmm(self.minus_sq, q, base.T, alpha=2.0)
                if padded and self.minus_sq is None:
                    G[:, self.n:] = float("-inf")
                v, i = _top_m(G, m)
                scores[s:s + step], found[s:s + step] = v.float().numpy(), i.numpy()
        return scores, found


def _top_m(G, m: int):
    """(values, column indices) (b, m) of the m largest entries per row of the torch matrix G (b, N), unsorted.

    Where N is a multiple of :data:`TOPK_CHUNK` and has at least 2 (m + 1) chunks, two stages on views of G (no
    copy): the maxima of its chunks of TOPK_CHUNK columns, the m chunks with the largest maxima, then ``topk`` over
    their m x TOPK_CHUNK entries instead of all N (full GoEmotions, bfloat16: 30 ms instead of 63 ms per block of
    1,236 rows). Exact: an entry in any other chunk has m chunk maxima at or above it, so at least m selected
    entries are not below it (ties may pick other, equal entries). Elsewhere one ``topk``."""
    import torch

    b, n = G.shape
    size = TOPK_CHUNK
    chunks = n // size
    if n % size or chunks < 2 * (m + 1):
        return torch.topk(G, m, dim=1, largest=True, sorted=False)
    maxima = G.view(b, chunks, size).amax(dim=2)
    _, best = torch.topk(maxima, m, dim=1, largest=True, sorted=False)
    rows = (torch.arange(b)[:, None] * chunks + best).reshape(-1)
    vals = G.view(b * chunks, size).index_select(0, rows).view(b, m * size)
    v, pos = torch.topk(vals, m, dim=1, largest=True, sorted=False)
    return v, best.gather(1, pos // size) * size + pos % size


def _certified(index: _FlatIndex, rows: np.ndarray, scores: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(n,) bool: the re-ranked k nearest of query ``rows`` are exact. A row not among the m candidates has a
    bfloat16 score <= the candidates' lowest (``scores`` (n, m)), so a float64 similarity <= that + the slack;
    if the k-th re-ranked similarity (``distances`` (n, k) cosine) is strictly above, no such row can come
    before it or tie with it."""
    kth_similarity = 1.0 - distances[:, -1]
    return kth_similarity > scores.min(axis=1).astype(np.float64) + index.slack(rows)


def exact_neighbours(Z: np.ndarray, rows: np.ndarray, k: int, metric: str,
                     Z32: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest other rows of prepared ``Z`` for query ``rows`` (brute force, blocks of :data:`BLOCK`)."""
    Z32 = np.ascontiguousarray(Z, dtype=np.float32) if Z32 is None else Z32
    return _search_all(_FlatIndex(Z32, metric), Z, Z32, k, metric, None, rows=np.asarray(rows))


def build_neighbour_graph(
    X: np.ndarray,
    k: int = DEFAULT_K,
    metric: str = "cosine",
    method: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
    bf16: bool | None = None,
) -> NeighbourGraph:
    """The ``min(k, N - 1)`` nearest other rows of each row of ``X`` (N, D).

    ``metric``: "cosine" (distance = 1 - cosine similarity) or "euclidean". ``method``: "exact" (faiss
    flat index, brute force in row blocks), "hnsw" (hnswlib's HNSW graph, seeded; ``recall`` estimated on
    :data:`RECALL_SAMPLE` rows drawn with ``seed``) or "auto" (exact up to :data:`AUTO_EXACT_MAX_ROWS` rows).
    ``progress(done, total)``: rows searched. Distances are float64, ascending per row; see the module doc.
    ``bf16``: the exact cosine search's candidates from certified bfloat16 products (None: where the CPU
    multiplies bfloat16 natively, :func:`native_bf16`; the full GoEmotions 7.6 s instead of 12.2 s,
    ``bench/results/neighbours.md``); the same neighbours either way (ties by index).
    """
    import time

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    started = time.perf_counter()
    Z = prepare(X, metric)
    n = len(Z)
    k = max(0, min(int(k), n - 1))
    if method == "auto":
        method = "exact" if n <= AUTO_EXACT_MAX_ROWS else "hnsw"
    if k < 1:
        return NeighbourGraph(np.zeros((n, 0), np.int64), np.zeros((n, 0)), metric, f"{method} (fewer than 2 rows)",
                              None, time.perf_counter() - started)
    Z32 = np.ascontiguousarray(Z, dtype=np.float32)
    if method == "exact":
        low = metric == "cosine" and (native_bf16() if bf16 is None else bool(bf16))
        index = _FlatIndex(Z32, metric, bf16=low, Z=Z)
        label = "exact (torch float32 brute force, float64 re-ranked)"
        recall = None
    else:
        index = _HnswIndex(Z32, metric, seed, progress)
        ef, tuning = tune_ef_search(index, Z, Z32, k, metric, seed)
        label = (f"hnsw (hnswlib M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}, "
                 f"efSearch={ef} {tuning}, float64 re-ranked)")
        recall = None
    search_progress = progress
    if progress is not None and method == "hnsw":  # the build reported the first half
        def search_progress(done: int, total: int) -> None:
            progress(n if done >= total else n // 2 + done // 2, n)
    indices, distances = _search_all(index, Z, Z32, k, metric, search_progress)
    if method == "exact" and index.bf16:
        label = (f"exact (torch bfloat16 brute force, certified; {index.redone} of {n} rows searched again in "
                 "float32; float64 re-ranked)")
    short = np.flatnonzero(~np.isfinite(distances).all(axis=1))
    if len(short):  # the approximate search returned fewer than k neighbours: search those rows exactly
        indices[short], distances[short] = exact_neighbours(Z, short, k, metric, Z32=Z32)
    if method == "hnsw":
        recall = estimate_recall(Z, indices, distances, metric, seed=seed, Z32=Z32)
    return NeighbourGraph(indices, distances, metric, label, recall, time.perf_counter() - started)


def _sample_rows(n: int, seed: int, offset: int = 0) -> np.ndarray:
    """:data:`RECALL_SAMPLE` random rows; ``offset`` 0 = the rows that estimate recall, 1 = the disjoint rows
    that tune efSearch."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    return np.sort(perm[offset * RECALL_SAMPLE:(offset + 1) * RECALL_SAMPLE])


def tune_ef_search(index, Z: np.ndarray, Z32: np.ndarray, k: int, metric: str, seed: int) -> tuple[int, str]:
    """Set the HNSW ``index``'s efSearch: from :data:`HNSW_EF_SEARCH`, raised by :data:`HNSW_EF_STEP` (up to
    :data:`HNSW_EF_MAX`) until recall@k on :data:`RECALL_SAMPLE` tuning rows (disjoint from the rows of the
    reported estimate) reaches :data:`HNSW_TARGET_RECALL`. Returns ``(efSearch, description)``."""
    rows = _sample_rows(len(Z), seed, offset=1)
    if len(rows) == 0:
        rows = _sample_rows(len(Z), seed)
    _, exact_d = exact_neighbours(Z, rows, k, metric, Z32=Z32)
    kth = exact_d[:, -1:] + 1e-12 * np.maximum(1.0, np.abs(exact_d[:, -1:]))
    ef = max(HNSW_EF_SEARCH, k + 1 + EXTRA_CANDIDATES)
    tried, last = [], -1.0
    while True:
        index.set_ef(ef)
        _, d = _search_all(index, Z, Z32, k, metric, None, rows=rows)
        recall = float((d <= kth).mean())
        tried.append(f"{ef}: {recall:.3f}")
        # stop at the target, at the cap, or when a larger efSearch no longer helps
        if recall >= HNSW_TARGET_RECALL or ef >= HNSW_EF_MAX or recall - last < 0.002:
            return ef, f"(tuning recall {', '.join(tried)})"
        last, ef = recall, min(int(round(ef * HNSW_EF_STEP)), HNSW_EF_MAX)


def estimate_recall(Z: np.ndarray, indices: np.ndarray, distances: np.ndarray, metric: str, *,
                    sample: int = RECALL_SAMPLE, seed: int = 0, Z32: np.ndarray | None = None) -> float:
    """Recall@k of a graph (``indices``/``distances`` (N, k) over prepared ``Z``) against the exact search of
    ``sample`` random rows: the share of the exact k nearest found. Tie-aware: a found neighbour at a distance
    no larger than the exact k-th counts (rows that coincide are interchangeable)."""
    n, k = indices.shape
    rows = _sample_rows(n, seed)[:sample]
    _, exact_d = exact_neighbours(Z, rows, k, metric, Z32=Z32)
    kth = exact_d[:, -1:]
    tol = 1e-12 * np.maximum(1.0, np.abs(kth))
    return float((distances[rows] <= kth + tol).mean())


def radius_neighbours(Z: np.ndarray, rows: np.ndarray, radius: float, metric: str,
                      block: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact float64 radius search: ``(row, col, distance)`` of every pair ``row`` in ``rows``, ``col != row``,
    with distance <= ``radius`` over prepared ``Z``. Memory: ``block x N`` floats at a time (default: 16M
    floats, 128 MB)."""
    block = block or max(1, (16 << 20) // max(1, len(Z)))
    out_r, out_c, out_d = [], [], []
    rows = np.asarray(rows, dtype=np.int64)
    sq = (Z * Z).sum(axis=1) if metric == "euclidean" else None
    for start in range(0, len(rows), block):
        q = rows[start:start + block]
        G = Z[q] @ Z.T
        if metric == "cosine":
            D = np.clip(1.0 - G, 0.0, 2.0)
        else:
            D = np.sqrt(np.maximum(sq[q][:, None] + sq[None, :] - 2.0 * G, 0.0))
        D[np.arange(len(q)), q] = np.inf
        r, c = np.nonzero(D <= radius * (1 + 1e-9) + 1e-12)  # candidates; exact check below
        if len(r):
            d = pair_distances(Z, q[r], c[:, None], metric)[:, 0]
            ok = d <= radius
            out_r.append(q[r][ok])
            out_c.append(c[ok])
            out_d.append(d[ok])
    if not out_r:
        e = np.empty(0, dtype=np.int64)
        return e, e.copy(), np.empty(0)
    return np.concatenate(out_r), np.concatenate(out_c).astype(np.int64), np.concatenate(out_d)
