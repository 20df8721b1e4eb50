"""Speed and memory of the default label-issue detector against cleanlab's multi-label ``find_label_issues``.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python bench/bench_label_speed.py            # 50k x 20 and 200k x 40; growth over N
    nice -n 10 .venv/bin/python bench/bench_label_speed.py --quick    # 10k x 10 and 20k x 20 (a smoke run)
    nice -n 10 .venv/bin/python bench/bench_label_speed.py --sizes 1000000x40 --repeats 1 --no-growth

Data (seeded, :func:`make_data`): rows fall into clusters of about 50; each cluster has a tag profile (a
low-rank random factor, so tags co-occur, plus noise around imbalanced prevalences ``~ Beta(0.5, 4)``); true tags
``~ Bernoulli(sigmoid(profile))``; the given tags are the true ones with one tag flipped in 5% of the rows;
``P = sigmoid(0.6 * profile + 2 * (+-1 by the true tag) + 1.2 * normal noise)`` (an informative, imperfect model).
The neighbour indices (N, 15) are random members of each row's own cluster: a stand-in for the audit's shared
neighbour graph, which is built once per audit elsewhere (``dq_pipeline/neighbours.py``) -- **its time is not
included** in either column; ours receives it as ``neighbours=``, cleanlab does not use neighbours.

Measured, in one process: median wall time of ``--repeats`` runs of
``cleanlab.multilabel_classification.filter.find_label_issues(labels, P, n_jobs=1)`` (default arguments; its
list-of-lists labels prepared beforehand, untimed) and of ``find_label_issues(Y, P, neighbours=...)`` (the
shipped default); the ratio; a model-free baseline for scale (rarity ranking, ``bench/baselines.py``); a stage
breakdown of ours from one extra run under cProfile (cumulative seconds of the named functions; profiling adds a
little overhead); the peak memory traced by ``tracemalloc`` during one more run (numpy reports its buffers),
relative to ``P.nbytes``; and (unless ``--no-growth``) ours alone at N/8, N/4, N/2, N of the first size with the
growth exponent (least-squares slope of log time on log N). ``--before`` also times the pre-issue-11 default
(``bench.label_variants.issue10_default``, its kNN search replaced by the same neighbours) once per size up to
``--before-max-rows``. Results: stdout and ``bench/results/label_speed.md``.

What it does not show: the quality of the flags (``bench/bench_quality.py``; here the two detectors answer
different questions -- cleanlab flags per-tag disagreements, ours estimates how many rows are wrong), the neighbour
graph's cost (``bench/bench_neighbours.py``), nor other machines: the 2 cores here are shared, so only ratios
within one run are meaningful.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import cProfile
import gc
import platform
import pstats
import statistics
import sys
import time
import tracemalloc
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import baselines as bb
from dq_pipeline.issues import label_issues as li

RESULTS = ROOT / "bench" / "results"
#: (label, function name in dq_pipeline/issues/label_issues.py) of the stage breakdown.
STAGES = (
    ("neighbour votes (from given indices)", "neighbour_votes"),
    ("rules learned", "learn_label_rules"),
    ("second stage (fit_stacked)", "fit_stacked"),
    ("scoring (given + planted tag sets)", "__call__"),
    ("planting errors", "plant_errors"),
    ("estimate + bootstrap", "estimate_error_rate"),
    ("suggestions", "suggest"),
    ("tag issue rows", "tag_issue_rows"),
)


def make_data(n: int, k: int, seed: int = 0, cluster_size: int = 50, n_neighbors: int = 15,
              noise: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded synthetic ``(Y (n, k) bool given tags, P (n, k) float64, neighbours (n, n_neighbors) int64,
    wrong (n,) bool rows whose given tags were corrupted)``; see the module doc. Generated in row blocks."""
    rng = np.random.default_rng(seed)
    prev = np.clip(rng.beta(0.5, 4.0, k), 0.003, 0.6)
    n_clusters = max(1, n // cluster_size)
    cluster = rng.integers(0, n_clusters, n)
    profile = (np.log(prev / (1 - prev)) + 1.2 * (rng.normal(size=(n_clusters, 3)) @ rng.normal(size=(3, k)))
               + 0.8 * rng.normal(size=(n_clusters, k)))
    Y = np.empty((n, k), dtype=bool)
    P = np.empty((n, k), dtype=np.float64)
    wrong = np.zeros(n, dtype=bool)
    step = max(1, (1 << 20) // k)
    for a in range(0, n, step):
        b = min(n, a + step)
        z = profile[cluster[a:b]]
        truth = rng.random((b - a, k)) < 1.0 / (1.0 + np.exp(-z))
        bad = rng.random(b - a) < noise
        given = truth.copy()
        given[np.flatnonzero(bad), rng.integers(0, k, b - a)[bad]] ^= True
        Y[a:b], wrong[a:b] = given, bad
        P[a:b] = 1.0 / (1.0 + np.exp(-(0.6 * z + 2.0 * (2.0 * truth - 1.0) + 1.2 * rng.normal(size=(b - a, k)))))
    order = np.argsort(cluster, kind="stable")
    start = np.searchsorted(cluster[order], np.arange(n_clusters))
    size = np.maximum(np.bincount(cluster, minlength=n_clusters)[cluster], 1)
    pick = (rng.random((n, n_neighbors)) * size[:, None]).astype(np.int64)
    neighbours = order[start[cluster][:, None] + pick]
    return Y, P, neighbours, wrong


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        out = None
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def stage_seconds(Y: np.ndarray, P: np.ndarray, nb: np.ndarray) -> dict[str, float]:
    """Cumulative seconds per stage of one profiled ``find_label_issues`` run (see :data:`STAGES`)."""
    prof = cProfile.Profile()
    prof.enable()
    li.find_label_issues(Y, P, neighbours=nb)
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    out = {}
    for label, name in STAGES:
        out[label] = sum(v[3] for (file, _, fn), v in stats.items()
                         if fn == name and (file.endswith(("label_issues.py", "rules.py"))))
    out["total (profiled)"] = sum(v[3] for (file, _, fn), v in stats.items()
                                  if fn == "find_label_issues" and file.endswith("label_issues.py"))
    return out


def peak_memory(Y: np.ndarray, P: np.ndarray, nb: np.ndarray) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    li.find_label_issues(Y, P, neighbours=nb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def run_size(n: int, k: int, repeats: int, before: bool) -> dict:
    from cleanlab.multilabel_classification.filter import find_label_issues as cl_find

    Y, P, nb, wrong = make_data(n, k)
    labels = [np.flatnonzero(row).tolist() for row in Y]
    li.find_label_issues(Y[:2000], P[:2000], neighbours=nb[:2000] % 2000)  # imports and first-call costs
    t_cl, cl_flags = median_time(lambda: cl_find(labels, P, n_jobs=1), repeats)
    t_ours, res = median_time(lambda: li.find_label_issues(Y, P, neighbours=nb), repeats)
    t_rarity, _ = median_time(lambda: bb.rarity_scores(Y), repeats)
    row = {"n": n, "k": k, "cleanlab": t_cl, "ours": t_ours, "rarity": t_rarity,
           "cl_flagged": int(np.sum(cl_flags)), "ours_flagged": int(res.flags.sum()), "wrong": int(wrong.sum()),
           "ours_rate": float(res.summary["expected_error_rate"]),
           "auprc_ours": _auprc(wrong, -res.scores), "P_mib": P.nbytes / 2**20}
    row["stages"] = stage_seconds(Y, P, nb)
    row["peak"] = peak_memory(Y, P, nb)
    if before:
        from bench import label_variants as lv

        votes = li.neighbour_votes(Y, nb)
        shipped = li.knn_tag_votes
        li.knn_tag_votes = lambda features, Y_, n_neighbors=15: votes
        try:
            t0 = time.perf_counter()
            old = lv.issue10_default(Y, P, features=np.zeros((n, 1)))
            row["before"] = time.perf_counter() - t0
            row["auprc_before"] = _auprc(wrong, -old.scores)
        finally:
            li.knn_tag_votes = shipped
    return row


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


def growth(n: int, k: int, repeats: int) -> list[tuple[int, float]]:
    out = []
    for m in (n // 8, n // 4, n // 2, n):
        Y, P, nb, _ = make_data(m, k, seed=1)
        t, _ = median_time(lambda Y=Y, P=P, nb=nb: li.find_label_issues(Y, P, neighbours=nb), repeats)
        out.append((m, t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--sizes", default=None, help="comma-separated NxK, e.g. 50000x20,200000x40")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument("--before", action="store_true", help="also time the pre-issue-11 default (slow)")
    parser.add_argument("--before-max-rows", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = args.sizes or ("10000x10,20000x20" if args.quick else "50000x20,200000x40")
    sizes = [tuple(int(x) for x in s.lower().split("x")) for s in spec.split(",")]
    out_path = args.out or RESULTS / ("label_speed_quick.md" if args.quick else "label_speed.md")
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    rows = [run_size(n, k, args.repeats, args.before and n <= args.before_max_rows) for n, k in sizes]
    grow = None if args.no_growth else growth(*sizes[0], args.repeats)

    import cleanlab
    import sklearn

    command = "nice -n 10 .venv/bin/python bench/bench_label_speed.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    lines = [
        f"# Label-issue detector speed: ours (default) vs cleanlab {cleanlab.__version__} `find_label_issues`",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPU(s) (shared with other jobs), Python "
        f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {(time.perf_counter() - started) / 60:.1f} min.  ",
        "Data: `make_data` in this file (clustered rows, co-occurring imbalanced tags, 5% of rows with one tag "
        "flipped, an informative P). Neighbour indices are given to ours precomputed (the audit builds its "
        "neighbour graph once, elsewhere): **graph time excluded**. cleanlab: default arguments, `n_jobs=1`, labels "
        "as lists prepared untimed. BLAS limited to 1 thread.",
        "",
        f"## Time (median of {args.repeats} runs, one process)",
        "",
        "| N x K | cleanlab (s) | ours (s) | ours / cleanlab | rarity baseline (s) | "
        + ("before issue 11 (s, 1 run) | " if any("before" in r for r in rows) else "")
        + "flagged: cleanlab / ours / truly wrong | AUPRC ours" + (" / before" if any("before" in r for r in rows)
                                                                  else "") + " |",
        "|---|---:|---:|---:|---:|" + ("---:|" if any("before" in r for r in rows) else "") + "---|---:|",
    ]
    for r in rows:
        before = (f" {r['before']:.1f} |" if "before" in r else " - |") if any("before" in x for x in rows) else ""
        auprc = f"{r['auprc_ours']:.3f}" + (f" / {r['auprc_before']:.3f}" if "auprc_before" in r else "")
        lines.append(f"| {r['n']:,} x {r['k']} | {r['cleanlab']:.2f} | {r['ours']:.2f} | "
                     f"**{r['ours'] / r['cleanlab']:.2f}x** | {r['rarity']:.3f} |{before} "
                     f"{r['cl_flagged']:,} / {r['ours_flagged']:,} / {r['wrong']:,} | {auprc} |")
    lines += ["", "## Stage breakdown of ours (one cProfile run; cumulative seconds)", ""]
    lines.append("| stage | " + " | ".join(f"{r['n']:,} x {r['k']}" for r in rows) + " |")
    lines.append("|---|" + "---:|" * len(rows))
    for label in [s[0] for s in STAGES] + ["total (profiled)"]:
        lines.append(f"| {label} | " + " | ".join(f"{r['stages'][label]:.2f}" for r in rows) + " |")
    lines += ["", "## Peak memory of ours (tracemalloc, one run)", "",
              "| N x K | P (MiB) | peak traced (MiB) | peak / P.nbytes |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']:,} x {r['k']} | {r['P_mib']:.0f} | {r['peak'] / 2**20:.0f} | "
                     f"{r['peak'] / 2**20 / r['P_mib']:.1f}x |")
    if grow:
        x = np.log([g[0] for g in grow])
        y = np.log([g[1] for g in grow])
        slope = float(np.polyfit(x, y, 1)[0])
        lines += ["", f"## Growth of ours over N (K = {sizes[0][1]}, seed 1, median of {args.repeats})", "",
                  "| N | ours (s) | s per 100k rows |", "|---:|---:|---:|"]
        lines += [f"| {m:,} | {t:.2f} | {t / m * 1e5:.2f} |" for m, t in grow]
        lines += ["", f"Growth exponent (slope of log time on log N): **{slope:.2f}** (1 = linear)."]
    lines += ["", "Not shown: flag quality (bench/bench_quality.py), the neighbour graph's cost "
              "(bench/bench_neighbours.py), other machines (only the ratios within this run are meaningful).", ""]
    text = "\n".join(lines)
    print(text)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)


if __name__ == "__main__":
    main()
