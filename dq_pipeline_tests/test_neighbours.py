"""The shared neighbour graph (dq_pipeline.neighbours) and the three detectors that read it.

With the exact method the graph and the detectors' outputs equal the previous implementations (one sklearn
brute-force search per detector, kept here as ``old_*``) on bundled data: GoEmotions sample texts (MiniLM,
cosine), MIML photos (EfficientNet-Lite0, cosine), MULAN emotions (euclidean). Neighbours that tie (equal
float64 distances: exact duplicates) may come in another order; only rows without ties at the k-th
distance are compared index by index.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline import neighbours as nb
from dq_pipeline.issues import duplicates as dup
from dq_pipeline.issues.label_issues import knn_tag_votes
from dq_pipeline.issues.outliers import find_outliers, flag_by_null, knn_mean_distance
from dq_pipeline.neighbours import build_neighbour_graph
from dq_pipeline_tests.conftest import DATA


# ------------------------------------------------------------------ the previous implementations

def old_knn_tag_votes(features: np.ndarray, Y: np.ndarray, n_neighbors: int = 15) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    Y = np.asarray(Y, dtype=np.float64)
    nn = NearestNeighbors(n_neighbors=n_neighbors, metric="cosine").fit(np.asarray(features, dtype=np.float64))
    return Y[nn.kneighbors(return_distance=False)].mean(axis=1)


def old_knn(X: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, metric=metric).fit(np.asarray(X, dtype=np.float64)).kneighbors()


def old_near_duplicates(X: np.ndarray, Y: np.ndarray, **kw):
    """find_near_duplicates with the previous all-pairs pass (``_near_pass``) instead of the graph."""
    original = dup.near_pairs
    dup.near_pairs = lambda Xf, threshold, metric, graph=None, progress=None: dup._near_pass(Xf, threshold, metric)
    try:
        return dup.find_near_duplicates(X, Y, **kw)
    finally:
        dup.near_pairs = original


def _groups(result) -> list[list[int]]:
    return [sorted(g["example_index"].tolist()) for _, g in result.details.groupby("group_id")]


def _multi_hot(labels: pd.Series) -> np.ndarray:
    classes = sorted({t for s in labels for t in s.split("|") if t})
    return np.array([[c in s.split("|") for c in classes] for s in labels], dtype=np.int8)


# ------------------------------------------------------------------ bundled data

def _cache():
    from dq_pipeline.embed.cache import EmbeddingCache

    return EmbeddingCache(Path(os.environ["DQ_CACHE_DIR"]) / "embeddings")


@pytest.fixture(scope="module")
def goemotions() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bundled GoEmotions sample (1,261 comments) as the features asset embeds it (MiniLM, float32)."""
    from dq_pipeline.embed.text import embed_texts_cached

    frame = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False)
    X = embed_texts_cached(frame["text"].tolist(), cache=_cache())
    return X, _multi_hot(frame["labels"]), [dup.text_key(t) for t in frame["text"]]


@pytest.fixture(scope="module")
def miml() -> tuple[np.ndarray, np.ndarray]:
    """First 120 bundled MIML photos (EfficientNet-Lite0 embeddings; near duplicates 37/41 and 39/43)."""
    from dq_pipeline.embed.image import embed_images_cached

    rows = pd.read_csv(DATA / "miml_scenes" / "labels.csv", keep_default_na=False).iloc[:120]
    X = embed_images_cached([DATA / "miml_scenes" / p for p in rows["image"]], cache=_cache())
    return X, _multi_hot(rows["labels"])


@pytest.fixture(params=["goemotions", "miml", "emotions"])
def data(request) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, Y, metric) of one bundled dataset (only the one asked for is embedded)."""
    if request.param == "emotions":
        X, Y = request.getfixturevalue("emotions_xy")
        return X, Y, "euclidean"
    X, Y = request.getfixturevalue(request.param)[:2]
    return X, Y, "cosine"


#: sklearn's euclidean distances use |x|^2 + |y|^2 - 2 x.y (relative error ~1e-13); the graph's are |x - y|
TOL = {"cosine": 0.0, "euclidean": 1e-10}


def _untied_rows(graph: nb.NeighbourGraph, k: int) -> np.ndarray:
    """Rows whose k-th and (k+1)-th neighbour distances differ (index order is then unambiguous)."""
    d = graph.distances
    return np.flatnonzero(d[:, k] - d[:, k - 1] > 1e-12)


def test_exact_graph_equals_sklearn_brute_force(data) -> None:
    X, _, metric = data
    g = build_neighbour_graph(X, k=15, metric=metric, method="exact")
    assert g.indices.shape == (len(X), 15) and g.indices.dtype == np.int64 and g.distances.dtype == np.float64
    assert g.recall is None and g.method.startswith("exact")
    assert (np.diff(g.distances, axis=1) >= 0).all()  # ascending
    assert not (g.indices == np.arange(len(X))[:, None]).any()  # never the row itself
    dist, idx = old_knn(X, 15, metric)
    np.testing.assert_allclose(g.distances, dist, rtol=TOL[metric], atol=1e-12)
    wider = build_neighbour_graph(X, k=16, metric=metric, method="exact")
    rows = _untied_rows(wider, 15)
    assert len(rows) > 0.9 * len(X)  # the rest tie at the 15th distance (duplicate texts)
    np.testing.assert_array_equal(np.sort(g.indices[rows], axis=1), np.sort(idx[rows], axis=1))


def test_detectors_on_the_graph_equal_the_previous_searches(data) -> None:
    X, Y, metric = data
    g = build_neighbour_graph(X, k=15, metric=metric, method="exact")
    # outliers: same k-NN mean distance (float64), hence the same scores and flags
    d_old = old_knn(X, 10, metric)[0].mean(axis=1)
    new = find_outliers(X, metric=metric, graph=g)
    np.testing.assert_allclose(knn_mean_distance(X, metric=metric, graph=g), d_old, rtol=TOL[metric], atol=1e-12)
    np.testing.assert_array_equal(new.flags, flag_by_null(d_old, new.summary["z_threshold"]))
    np.testing.assert_array_equal(new.flags, find_outliers(X, metric=metric).flags)  # graph=None builds one
    # label votes (cosine neighbours): equal wherever the 15th neighbour is not tied
    if metric == "cosine":
        votes = knn_tag_votes(X, Y, graph=g)
        rows = _untied_rows(build_neighbour_graph(X, k=16, metric=metric, method="exact"), 15)
        np.testing.assert_allclose(votes[rows], old_knn_tag_votes(X, Y)[rows], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(votes, knn_tag_votes(X, Y))
    # near duplicates: the same groups as the all-pairs pass
    thr = dup.DEFAULT_THRESHOLD if metric == "cosine" else 1.0
    old = old_near_duplicates(X, Y, threshold=thr, metric=metric)
    fresh = dup.find_near_duplicates(X, Y, threshold=thr, metric=metric, graph=g)
    assert _groups(fresh) == _groups(old)
    np.testing.assert_array_equal(fresh.flags, old.flags)
    np.testing.assert_allclose(fresh.scores, old.scores, rtol=0, atol=1e-6)  # old: float32 distances
    pd.testing.assert_frame_equal(fresh.details, old.details)


def test_goemotions_sample_has_duplicates_the_graph_finds(goemotions) -> None:
    X, Y, keys = goemotions
    old = old_near_duplicates(X, Y, exact_keys=keys)
    new = dup.find_near_duplicates(X, Y, exact_keys=keys)
    assert new.summary["n_groups"] >= 5 and _groups(new) == _groups(old)
    assert new.summary == old.summary


# ------------------------------------------------------------------ constructed cases

def test_a_duplicate_group_larger_than_k_is_found_whole() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16))
    twin = rng.normal(size=16)
    group = twin + 1e-4 * rng.normal(size=(40, 16))  # 40 near copies: more than k + 1 = 16
    chain = twin + np.linspace(0.0, 1.0, 6)[:, None] * rng.normal(size=16) * 0.02  # a tail hanging off it
    X = np.vstack([base, group, chain, np.repeat(base[:1], 20, axis=0)])  # and 21 exact copies of row 0
    Y = rng.integers(0, 2, size=(len(X), 3))
    g = build_neighbour_graph(X, k=15, metric="cosine")
    assert g.distances[300:340, -1].max() < 0.05  # the graph alone cannot hold the whole group
    new = dup.find_near_duplicates(X, Y, graph=g)
    old = old_near_duplicates(X, Y)
    assert _groups(new) == _groups(old)
    sizes = sorted(len(m) for m in _groups(new))
    assert sizes[-1] >= 40 and 21 in sizes
    np.testing.assert_array_equal(dup.find_near_duplicates(X, Y).flags, new.flags)  # graph=None


def test_more_coinciding_rows_than_k_drop_a_twin_not_a_neighbour() -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(50, 4)), np.repeat(rng.normal(size=(1, 4)), 30, axis=0)])
    for metric in ("cosine", "euclidean"):
        g = build_neighbour_graph(X, k=10, metric=metric)
        assert (g.distances[50:] == 0).all()  # all 10 neighbours of a copy are other copies
        assert not (g.indices == np.arange(len(X))[:, None]).any()
        np.testing.assert_allclose(g.distances, old_knn(X, 10, metric)[0], rtol=TOL[metric], atol=1e-12)


def test_small_inputs_progress_and_errors() -> None:
    assert build_neighbour_graph(np.ones((1, 3)), k=5).indices.shape == (1, 0)
    g = build_neighbour_graph(np.eye(4), k=10, metric="euclidean")
    assert g.k == 3 and np.allclose(g.distances, np.sqrt(2))
    zero = build_neighbour_graph(np.vstack([np.zeros(3), np.eye(3)]), k=2, metric="cosine")
    assert np.allclose(zero.distances[0], 1.0)  # an all-zero row is at cosine distance 1 (as in sklearn)
    calls: list[tuple[int, int]] = []
    X = np.random.default_rng(2).normal(size=(1000, 8))
    old_block = nb.BLOCK
    nb.BLOCK = 300
    try:
        build_neighbour_graph(X, k=5, progress=lambda d, t: calls.append((d, t)))
    finally:
        nb.BLOCK = old_block
    assert calls == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]
    with pytest.raises(ValueError, match="method must be one of"):
        build_neighbour_graph(X, method="annoy")
    with pytest.raises(ValueError, match="metric must be one of"):
        build_neighbour_graph(X, metric="manhattan")
    bad = X.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7, column 3 is nan"):
        build_neighbour_graph(bad)
    with pytest.raises(ValueError, match="need 1000 x 20"):
        find_outliers(X, metric="cosine", n_neighbors=20, graph=build_neighbour_graph(X, k=15))
    with pytest.raises(ValueError, match="is cosine"):
        find_outliers(X, metric="euclidean", graph=build_neighbour_graph(X, k=15))


def test_auto_is_exact_on_small_data(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(3).normal(size=(500, 8))
    assert build_neighbour_graph(X, method="auto").method.startswith("exact")
    monkeypatch.setattr(nb, "AUTO_EXACT_MAX_ROWS", 100)
    assert build_neighbour_graph(X, method="auto").method.startswith("hnsw")


# ------------------------------------------------------------------ approximate (HNSW)

def test_hnsw_recall_and_the_same_flags_as_exact() -> None:
    """4,000 rows in 32-d clusters with planted outliers and near-duplicate pairs: HNSW recall >= 0.95 (its own
    estimate and the measured one), and the same outlier flags and duplicate groups as the exact graph."""
    rng = np.random.default_rng(4)
    centres = rng.normal(scale=4.0, size=(15, 32))
    X = centres[rng.integers(0, 15, size=4000)] + rng.normal(size=(4000, 32))
    X[:20] = rng.normal(scale=12.0, size=(20, 32))  # far from every cluster
    X[3000:3030] = X[2000:2030] + 1e-3 * rng.normal(size=(30, 32))  # 30 near-duplicate pairs
    Y = rng.integers(0, 2, size=(4000, 5))
    for metric, thr in (("euclidean", 0.05), ("cosine", 1e-4)):
        exact = build_neighbour_graph(X, k=15, metric=metric, method="exact")
        approx = build_neighbour_graph(X, k=15, metric=metric, method="hnsw", seed=0)
        assert approx.method.startswith("hnsw") and approx.recall is not None and approx.recall >= 0.95
        measured = (approx.distances <= exact.distances[:, -1:] + 1e-12).mean()
        assert measured >= 0.95, measured
        a = find_outliers(X, metric=metric, graph=approx)
        e = find_outliers(X, metric=metric, graph=exact)
        assert set(np.flatnonzero(e.flags)) >= set(range(20))
        np.testing.assert_array_equal(a.flags, e.flags)
        na = dup.find_near_duplicates(X, Y, metric=metric, threshold=thr, graph=approx)
        ne = dup.find_near_duplicates(X, Y, metric=metric, threshold=thr, graph=exact)
        assert _groups(na) == _groups(ne) == [[2000 + i, 3000 + i] for i in range(30)]


# ------------------------------------------------------------------ certified bfloat16 candidates

def test_bf16_candidates_give_the_float32_graph(goemotions) -> None:
    """The exact cosine graph from bfloat16 products (certified, the uncertified rows searched again in float32)
    has the same neighbours and distances as the float32 search, on real text embeddings (bf16 products are
    emulated where the CPU lacks them: slower, not different)."""
    X = goemotions[0]
    low = build_neighbour_graph(X, k=15, metric="cosine", method="exact", bf16=True)
    full = build_neighbour_graph(X, k=15, metric="cosine", method="exact", bf16=False)
    assert "bfloat16" in low.method and "bfloat16" not in full.method
    np.testing.assert_array_equal(low.indices, full.indices)
    np.testing.assert_array_equal(low.distances, full.distances)
    assert isinstance(nb.native_bf16(), bool)


def test_bf16_rounding_never_decides_a_neighbour() -> None:
    """A tight cluster whose similarities differ below bfloat16's resolution (~4e-3) but far above float32's: the
    bf16 scores alone pick wrong neighbours, the certificate refuses those rows, and their float32 search makes
    every row equal the float64 brute force."""
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    cluster = centre + 0.05 * np.linalg.norm(centre) * rng.normal(size=(120, 64)) / 8.0
    X = np.vstack([cluster, rng.normal(size=(200, 64))])
    k = 10
    Z = nb.prepare(X, "cosine")
    sim = Z @ Z.T
    np.fill_diagonal(sim, -np.inf)
    truth = np.sort(np.argsort(-sim, axis=1, kind="stable")[:, :k], axis=1)
    # the data is hard: bf16 scores alone (with the usual extra candidates) miss true neighbours in the cluster
    index = nb._FlatIndex(np.ascontiguousarray(Z, dtype=np.float32), "cosine", bf16=True, Z=Z)
    scores, cand = index.search(np.ascontiguousarray(Z, dtype=np.float32), k + 1 + nb.EXTRA_CANDIDATES)
    missed = [not set(truth[i]) <= set(cand[i]) for i in range(120)]
    assert sum(missed) > 100
    g = build_neighbour_graph(X, k=k, metric="cosine", method="exact", bf16=True)
    redone = int(g.method.split("certified; ")[1].split(" of ")[0])
    assert redone >= sum(missed)
    np.testing.assert_array_equal(np.sort(g.indices, axis=1), truth)


@pytest.mark.parametrize("n", [300, 32 * 256, 32 * 256 + 77])
def test_two_stage_top_m_equals_topk(n: int) -> None:
    """The chunked selection returns the m largest values of every row (as torch.topk, ties aside) with
    indices that hold those values: negative scores, many exact ties, a last chunk shorter than the others, and
    rows whose m largest sit in one chunk."""
    import torch

    rng = np.random.default_rng(n)
    m = 12
    for dtype in (torch.float32, torch.bfloat16):
        G = torch.from_numpy(np.round(rng.normal(size=(40, n)), 1).astype(np.float32) - 3.0).to(dtype)
        G[0, :m] = 10.0  # one row's top all in the first chunk
        G[1, -3:] = 10.0  # some in the short last chunk
        G[2] = 1.0  # a row of ties
        v, i = nb._top_m(G, m)
        ref, _ = torch.topk(G, m, dim=1)
        torch.testing.assert_close(torch.sort(v, dim=1).values, torch.sort(ref, dim=1).values, rtol=0, atol=0)
        torch.testing.assert_close(G.gather(1, i), v, rtol=0, atol=0)
        assert all(len(set(row)) == m for row in i.tolist())  # m distinct columns
        assert int(i.max()) < n


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pair_distances_do_not_depend_on_the_block_size(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 24))
    X[7] = X[3]  # an identical pair: distance exactly 0
    X[11] = 0.0  # an all-zero row: cosine distance 1
    Z = nb.prepare(X, metric)
    rows = np.arange(300)
    cols = rng.integers(0, 300, size=(300, 9))
    cols[3, 0], cols[11, 0] = 7, 2
    monkeypatch.setattr(nb, "PAIR_BLOCK", 10 ** 9)  # one block
    whole = nb.pair_distances(Z, rows, cols, metric)
    monkeypatch.setattr(nb, "PAIR_BLOCK", 9 * 24 * 5)  # five rows a block
    np.testing.assert_array_equal(nb.pair_distances(Z, rows, cols, metric), whole)
    diff = Z[cols] - Z[rows][:, None, :]  # by definition
    expected = 0.5 * (diff * diff).sum(axis=2) if metric == "cosine" else np.sqrt((diff * diff).sum(axis=2))
    if metric == "cosine":
        expected[11, :] = 1.0
        expected[(cols == 11)] = 1.0
    np.testing.assert_allclose(whole, expected, rtol=1e-12, atol=1e-15)
    assert whole[3, 0] == 0.0
