"""Neighbour-graph libraries and the three kNN detectors, old (one brute-force search each) vs new (one graph).

Usage::

    HF_HUB_OFFLINE=1 nice -n 10 /work/main/.venv/bin/python bench/bench_neighbours.py            # ~25 min, 2 cores
    HF_HUB_OFFLINE=1 nice -n 10 /work/main/.venv/bin/python bench/bench_neighbours.py --quick    # 20k/50k rows

Data: (a) the full GoEmotions (``../shared/data/goemotions``, 54,263 texts) embedded with the packaged
all-MiniLM-L6-v2 exactly as the ``features`` asset does (through the embedding cache ``--cache-dir``; a cold
cache embeds for ~2-3 min), cosine; (b) synthetic tabular rows, 64 columns (a 12-d Gaussian mixture of 20
clusters mapped linearly to 64-d plus noise, standardised), euclidean, at 100k rows (every library) and 1M
rows (the chosen method and hnswlib).

Libraries (k = 15 neighbours, the graph's k; each run in its own process for its peak RSS):
``sklearn brute`` (``NearestNeighbors(metric=...).kneighbors()``, float64); ``faiss exact`` and ``faiss hnsw``
(faiss's ``IndexFlatIP``/``IndexFlatL2`` and ``IndexHNSWFlat`` M=16, efConstruction=80, efSearch=96, behind the
shipped float32 search + float64 re-ranking); ``torch exact`` and ``hnswlib tuned`` (the shipped
:func:`dq_pipeline.neighbours.build_neighbour_graph`, ``method="exact"`` / ``"hnsw"``: torch brute force, hnswlib with
the efSearch tuning, both re-ranked in float64);
``hnswlib`` (the same M=16, ef_construction=80, ef=96 as faiss hnsw; float32, no re-ranking); ``pynndescent`` (defaults,
n_neighbors=16; its first call includes numba compilation, reported separately when measurable).
Recall@10/15 is tie-aware against the exact graph (a returned neighbour counts when its float64 distance is
at most the exact 10th/15th; on 1M rows: :data:`RECALL_SAMPLE` random rows searched exactly).

Detectors (GoEmotions): ``old`` = the three searches of the previous code (``knn_tag_votes``: sklearn cosine
kNN, 15; ``knn_mean_distance``: sklearn kNN, 10; ``_near_pass``: all pairs, chunked), ``new`` = one graph
(``method="auto"``) read by the three. Flag agreement old vs new: outlier flags and near-duplicate groups.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("DQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
K = 15
RECALL_SAMPLE = 500


# ----------------------------------------------------------------------------------------------- data

def goemotions(cache_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Full GoEmotions: (X (N, 384) float32 as the features asset embeds it, Y (N, K), exact keys)."""
    import pandas as pd

    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.text import embed_texts_cached
    from dq_pipeline.ingest import parse_tags, tags_matrix
    from dq_pipeline.issues.duplicates import text_key

    frame = pd.read_csv(SHARED / "goemotions" / "goemotions.csv", keep_default_na=False)
    frame = frame[frame["text"].str.strip() != ""].reset_index(drop=True)
    texts = frame["text"].astype(str).tolist()
    X = embed_texts_cached(texts, "all-MiniLM-L6-v2", EmbeddingCache(cache_dir))
    sets = [parse_tags(s, "|") for s in frame["labels"]]
    Y = tags_matrix(sets, sorted({t for s in sets for t in s}))
    return np.asarray(X), Y, [text_key(t) for t in texts]


def tabular(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    """(n, d) standardised synthetic rows: a 12-d mixture of 20 Gaussian clusters, mapped to d + noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, 12))
    z = centres[rng.integers(0, 20, size=n)] + rng.normal(size=(n, 12))
    X = z @ rng.normal(size=(12, d)) + 0.5 * rng.normal(size=(n, d))
    X -= X.mean(axis=0)
    X /= X.std(axis=0)
    return X.astype(np.float32)


# -------------------------------------------------------------------------------------- one method

def run_method(lib: str, path: str, metric: str, out: str) -> None:
    """Child process: build the k-NN graph of the matrix at ``path`` with ``lib``; save indices (+ distances
    where the library gives float64 ones) to ``out``; print seconds and peak RSS as JSON."""
    X = np.load(path)
    base_rss = _hwm_mb()
    n = len(X)
    extra: dict = {}
    t0 = time.perf_counter()
    if lib == "sklearn brute":
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=K, metric=metric).fit(X.astype(np.float64)).kneighbors(
            return_distance=False)
    elif lib in ("faiss exact", "faiss hnsw"):
        # faiss's IndexFlat / IndexHNSWFlat behind the shipped float32 search + float64 re-ranking (what
        # build_neighbour_graph ran until it moved to torch (exact) and hnswlib (hnsw)); faiss-cpu: the dev extra
        import faiss

        from dq_pipeline import neighbours as nb

        Z = nb.prepare(X, metric)
        Z32 = np.ascontiguousarray(Z, dtype=np.float32)
        ip = metric == "cosine"
        if lib == "faiss exact":
            index = faiss.IndexFlatIP(Z32.shape[1]) if ip else faiss.IndexFlatL2(Z32.shape[1])
        else:
            index = faiss.IndexHNSWFlat(Z32.shape[1], 16, faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2)
            index.hnsw.efConstruction, index.hnsw.efSearch = 80, 96
        index.add(Z32)
        idx, _ = nb._search_all(index, Z, Z32, K, metric, None)
        extra = {"method": f"{lib}, float64 re-ranked"}
    elif lib in ("torch exact", "torch exact float32", "hnswlib tuned"):
        # "torch exact": the shipped default (cosine from certified bfloat16 products where the CPU has them);
        # "torch exact float32": the same search with the bfloat16 candidates switched off
        from dq_pipeline.neighbours import build_neighbour_graph

        g = build_neighbour_graph(X, k=K, metric=metric, method="hnsw" if lib == "hnswlib tuned" else "exact",
                                  bf16=False if lib == "torch exact float32" else None)
        idx = g.indices
        extra = {"recall_estimate": g.recall, "method": g.method}
    elif lib == "hnswlib":
        import hnswlib

        Z = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
        index = hnswlib.Index(space="ip" if metric == "cosine" else "l2", dim=X.shape[1])
        index.init_index(max_elements=n, M=16, ef_construction=80, random_seed=0)
        index.add_items(Z, np.arange(n))
        index.set_ef(96)
        cand, _ = index.knn_query(Z, k=K + 1)
        idx = _drop_self(cand.astype(np.int64))
    elif lib == "pynndescent":
        from pynndescent import NNDescent

        t_small = time.perf_counter()
        NNDescent(X[:2000], metric=metric, n_neighbors=K + 1, random_state=0).neighbor_graph  # numba compile
        extra = {"compile_s": round(time.perf_counter() - t_small, 1)}
        t0 = time.perf_counter()
        cand, _ = NNDescent(X, metric=metric, n_neighbors=K + 1, random_state=0).neighbor_graph
        idx = _drop_self(cand.astype(np.int64))
    else:
        raise ValueError(lib)
    seconds = time.perf_counter() - t0
    np.save(out, idx)
    peak = _hwm_mb()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "data_rss_mb": base_rss, **extra}))


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM, MB; unlike ru_maxrss it does not inherit the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _drop_self(cand: np.ndarray) -> np.ndarray:
    rows = np.arange(len(cand))
    own = cand == rows[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), cand.shape[1] - 1)
    keep = np.ones_like(own)
    keep[rows, drop] = False
    return cand[keep].reshape(len(cand), cand.shape[1] - 1)


def measure(lib: str, X: np.ndarray, metric: str, tmp: Path) -> tuple[dict, np.ndarray]:
    path = tmp / "X.npy"
    np.save(path, X)
    out = tmp / "idx.npy"
    cmd = [sys.executable, __file__, "--one", lib, str(path), metric, str(out)]
    print(f"  {lib} on {X.shape[0]:,} x {X.shape[1]} ...", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}"}, None
    info = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"    {info}", flush=True)
    return info, np.load(out)


def recall_at(Z: np.ndarray, idx: np.ndarray, exact_d: np.ndarray, metric: str, rows: np.ndarray | None = None
              ) -> dict[int, float]:
    """Tie-aware recall@10 / @15 of neighbour lists ``idx`` (rows ``rows`` of the graph) vs exact distances."""
    from dq_pipeline.neighbours import pair_distances

    rows = np.arange(len(idx)) if rows is None else rows
    d = pair_distances(Z, rows, idx[rows], metric)
    out = {}
    for k in (10, 15):
        kth = exact_d[:, k - 1:k]
        out[k] = float((d[:, :k] <= kth + 1e-12).mean())
    return out


def _part(parts: Path, *names: str) -> Path:
    slug = "__".join("".join(c if c.isalnum() else "_" for c in n) for n in names)
    return parts / f"{slug}.json"


def library_table(name: str, X: np.ndarray, metric: str, libs: list[str], tmp: Path, parts: Path,
                  command: str) -> list[dict]:
    """One row per library; each row is saved under ``parts`` (and reused from there: ``--resume``)."""
    from dq_pipeline.neighbours import exact_neighbours, prepare

    Z = prepare(X, metric)
    n = len(X)
    rows = np.sort(np.random.default_rng(1).choice(n, size=min(RECALL_SAMPLE, n), replace=False))
    _, exact_d = exact_neighbours(Z, rows, K, metric)  # reference on the sampled rows
    table = []
    for lib in libs:
        path = _part(parts, name, lib)
        if path.exists():
            table.append(json.loads(path.read_text()))
            continue
        info, idx = measure(lib, X, metric, tmp)
        row = {"data": name, "library": lib, **info, "command": command}
        if idx is not None:
            row.update({f"recall@{k}": v for k, v in recall_at(Z, idx, exact_d, metric, rows).items()})
        path.write_text(json.dumps(row))
        table.append(row)
    return table


# ------------------------------------------------------------------------------------------ detectors

def old_knn_tag_votes(features: np.ndarray, Y: np.ndarray, n_neighbors: int = 15) -> np.ndarray:
    """``knn_tag_votes`` before the shared graph (sklearn brute-force cosine, float64)."""
    from sklearn.neighbors import NearestNeighbors

    Y = np.asarray(Y, dtype=np.float64)
    nn = NearestNeighbors(n_neighbors=n_neighbors, metric="cosine").fit(np.asarray(features, dtype=np.float64))
    return Y[nn.kneighbors(return_distance=False)].mean(axis=1)


def old_knn_mean_distance(X: np.ndarray, n_neighbors: int = 10, metric: str = "cosine") -> np.ndarray:
    """``knn_mean_distance`` before the shared graph (sklearn, no query: each row left out)."""
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=np.float64)
    dist, _ = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(X).kneighbors()
    return dist.mean(axis=1)


def groups_of(result) -> set[frozenset[int]]:
    det = result.details
    return {frozenset(g["example_index"].tolist()) for _, g in det.groupby("group_id")}


def detectors(X: np.ndarray, Y: np.ndarray, keys: list[str]) -> dict:
    from dq_pipeline.issues import duplicates as dup
    from dq_pipeline.issues.label_issues import knn_tag_votes
    from dq_pipeline.issues.outliers import find_outliers, flag_by_null
    from dq_pipeline.neighbours import build_neighbour_graph

    out: dict = {}
    t = time.perf_counter()
    votes_old = old_knn_tag_votes(X, Y)
    out["old_votes_s"] = time.perf_counter() - t
    t = time.perf_counter()
    d_old = old_knn_mean_distance(X)
    out["old_outliers_s"] = time.perf_counter() - t
    t = time.perf_counter()
    new_pairs = dup.near_pairs
    dup.near_pairs = lambda Xf, thr, metric, graph=None, progress=None: dup._near_pass(Xf, thr, metric)
    try:
        near_old = dup.find_near_duplicates(X, Y, exact_keys=keys)
    finally:
        dup.near_pairs = new_pairs
    out["old_near_s"] = time.perf_counter() - t

    t = time.perf_counter()
    g = build_neighbour_graph(X, k=K, metric="cosine", method="auto")
    out["new_graph_s"] = time.perf_counter() - t
    out["new_method"] = g.method
    t = time.perf_counter()
    votes_new = knn_tag_votes(X, Y, graph=g)
    outl_new = find_outliers(X, graph=g)
    near_new = dup.find_near_duplicates(X, Y, exact_keys=keys, graph=g)
    out["new_read_s"] = time.perf_counter() - t

    flags_old = flag_by_null(d_old)
    out["outlier_flags_old"] = int(flags_old.sum())
    out["outlier_flags_new"] = int(outl_new.flags.sum())
    out["outlier_flags_both"] = int((flags_old & outl_new.flags).sum())
    out["knn_distance_max_abs_diff"] = float(np.abs(d_old - knn_distance(outl_new, g)).max())
    out["votes_rows_equal"] = float((np.abs(votes_old - votes_new).max(axis=1) < 1e-12).mean())
    go, gn = groups_of(near_old), groups_of(near_new)
    out["dup_groups_old"], out["dup_groups_new"], out["dup_groups_same"] = len(go), len(gn), len(go & gn)
    out["dup_members_old"] = int(near_old.flags.sum())
    out["dup_members_new"] = int(near_new.flags.sum())
    out["dup_score_max_abs_diff"] = float(np.abs(near_old.scores - near_new.scores).max())
    return out


def knn_distance(result, g) -> np.ndarray:
    return g.distances[:, : result.summary["n_neighbors"]].mean(axis=1)


# ---------------------------------------------------------------------------------------------- report

def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:,.1f}"
    return str(v)


def markdown(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        run_method(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k GoEmotions rows, 50k tabular, no 1M")
    ap.add_argument("--cache-dir", default=os.environ.get("DQ_BENCH_EMBED_CACHE",
                                                            "/tmp/dq_bench_review/cache/embeddings"))
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--libs", nargs="*", help="only these libraries (quote names with spaces)")
    ap.add_argument("--out", default=str(RESULTS / "neighbours.md"))
    ap.add_argument("--smoke", action="store_true", help="3k / 5k rows: checks the script runs")
    ap.add_argument("--only", choices=["all", "libs", "detectors", "report"], default="all",
                    help="run one part (parts are saved in --parts and reused; 'report' writes --out from them)")
    ap.add_argument("--parts", default=str(RESULTS / ".neighbours_parts"))
    args = ap.parse_args()
    command = "HF_HUB_OFFLINE=1 nice -n 10 " + " ".join([Path(sys.executable).name, *sys.argv])
    parts = Path(args.parts)
    parts.mkdir(parents=True, exist_ok=True)
    all_libs = ["sklearn brute", "faiss exact", "torch exact", "torch exact float32", "faiss hnsw", "hnswlib", "hnswlib tuned", "pynndescent"]
    if args.libs:
        all_libs = [lib for lib in all_libs if lib in args.libs]
    m = 3000 if args.smoke else 20000 if args.quick else None
    n_tab = 5_000 if args.smoke else 50_000 if args.quick else 100_000
    name_g = "GoEmotions MiniLM {} x 384 cosine"
    if args.only != "report":
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            t = time.perf_counter()
            Xg, Yg, keys = goemotions(Path(args.cache_dir))
            print(f"GoEmotions: {Xg.shape} in {time.perf_counter() - t:.1f} s", flush=True)
            if m:
                Xg, Yg, keys = Xg[:m], Yg[:m], keys[:m]
            if args.only in ("all", "libs"):
                library_table(name_g.format(f"{len(Xg):,}"), Xg, "cosine", all_libs, tmp, parts, command)
                library_table(f"tabular {n_tab:,} x 64 euclidean", tabular(n_tab), "euclidean", all_libs, tmp,
                              parts, command)
                if not (args.quick or args.smoke or args.skip_1m):
                    library_table("tabular 1,000,000 x 64 euclidean", tabular(1_000_000), "euclidean",
                                  [lib for lib in ["faiss hnsw", "hnswlib", "hnswlib tuned"] if lib in all_libs],
                                  tmp, parts, command)
            if args.only in ("all", "detectors"):
                print("detectors old vs new ...", flush=True)
                det = detectors(Xg, Yg, keys)
                det.update(command=command, n=len(Xg))
                print(det, flush=True)
                (parts / "detectors.json").write_text(json.dumps(det))
        if args.only != "all":
            return
    tables = [json.loads(p.read_text()) for p in sorted(parts.glob("*.json")) if p.name != "detectors.json"]
    order = {lib: i for i, lib in enumerate(all_libs)}
    tables.sort(key=lambda r: (int(r["data"].split(" x ")[0].split()[-1].replace(",", "")), r["data"],
                               order.get(r["library"], 99)))
    det = json.loads((parts / "detectors.json").read_text())
    name_g = name_g.format(f"{det['n']:,}")
    commands = sorted({r["command"] for r in tables} | {det["command"]})
    for r in tables:
        r["peak_rss_mb"] = r.get("peak_rss_mb")
        r["rss_above_data_mb"] = (r["peak_rss_mb"] - r["data_rss_mb"]) if "data_rss_mb" in r else None
        r["rows_per_s"] = None
    for r in tables:
        if "seconds" in r:
            n = int(r["data"].split(" x ")[0].split()[-1].replace(",", ""))
            r["rows_per_s"] = n / r["seconds"]
    by_data: dict[str, float] = {}
    for r in tables:
        if r["library"] == "sklearn brute" and "seconds" in r:
            by_data[r["data"]] = r["seconds"]
    for r in tables:
        base = by_data.get(r["data"])
        r["speedup_vs_sklearn"] = base / r["seconds"] if base and "seconds" in r else None

    old_total = det["old_votes_s"] + det["old_outliers_s"] + det["old_near_s"]
    new_total = det["new_graph_s"] + det["new_read_s"]
    cols = ["data", "library", "seconds", "speedup_vs_sklearn", "rows_per_s", "peak_rss_mb", "rss_above_data_mb",
            "recall@10", "recall@15", "recall_estimate", "compile_s", "error", "method"]
    text = f"""# Neighbour graph: libraries, and the three kNN detectors old vs new

Written by `bench/bench_neighbours.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC,
{platform.machine()}, {os.cpu_count()} cores shared with other jobs (timings are single runs, noisy: compare
rows of one table, measured in the same run).

Commands (parts run side by side, then `--only report`): {"; ".join(f"`{c}`" for c in commands)}

k = {K} neighbours (the graph's k; outliers read the first 10). Seconds = build + query of all N rows (each
library in its own process); peak RSS of that process, and above the data alone. Recall@10/15: tie-aware, share
of the exact 10/15 nearest found (a returned neighbour counts when its float64 distance is at most the exact
10th/15th), on {RECALL_SAMPLE} random rows searched exactly. ``recall_estimate`` = what the graph itself stores
(`NeighbourGraph.recall`, {RECALL_SAMPLE} other rows). pynndescent's seconds exclude numba compilation
(`compile_s`, a 2,000-row warm-up).

## Libraries

{markdown(tables, cols)}

## The three detectors on {name_g}

| | label votes (k=15) | outliers (k=10) | near duplicates (r=0.05) | total |
|---|---|---|---|---|
| old: one brute-force search each (sklearn) | {det['old_votes_s']:.1f} s | {det['old_outliers_s']:.1f} s | {det['old_near_s']:.1f} s | {old_total:.1f} s |
| new: one graph ({det['new_method']}) + reads | | | | {det['new_graph_s']:.1f} s + {det['new_read_s']:.1f} s = {new_total:.1f} s |

New / old time: **{new_total / old_total:.3f}** ({old_total / new_total:.1f}x faster).

Agreement old vs new (same data):
- outlier flags: old {det['outlier_flags_old']}, new {det['outlier_flags_new']}, both {det['outlier_flags_both']};
  k-NN mean distance max |old - new| = {det['knn_distance_max_abs_diff']:.2e}
- tag votes: share of rows with identical votes = {det['votes_rows_equal']:.5f} (rows whose 15th neighbour
  ties with the 16th, e.g. duplicate texts, may differ: order among equals; the tests check that only those differ
  on the bundled sample, this run does not)
- near-duplicate groups: old {det['dup_groups_old']}, new {det['dup_groups_new']}, identical {det['dup_groups_same']};
  members old {det['dup_members_old']}, new {det['dup_members_new']}; score max |old - new| =
  {det['dup_score_max_abs_diff']:.2e} (old: float32 distances of float32 embeddings; new: float64)

What this does not show: times on 2 cores shared with other jobs (ratios within a table are the
comparable numbers); the HNSW graph's recall on other data (it is stored per audit in the asset's metadata).
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
