"""Speed and memory of the cleanlab-parity multi-label detector against cleanlab 2.9 itself.

Usage::

    .venv/bin/python bench/bench_detection_speed.py            # N=200,000 x K=40; memory at 1,000,000 x 100
    .venv/bin/python bench/bench_detection_speed.py --quick    # N=20,000 x K=20; memory at 100,000 x 50

Data generator (seeded, ``numpy.random.default_rng(seed)``): tag prevalences ``~ Beta(0.5, 4)``
(imbalanced: a few common tags, many rare ones); true tags ``~ Bernoulli(prevalence)``; given tags =
true tags with 2% of the entries flipped (label noise); probabilities ``~ Beta(5, 1.2)`` where the tag
is truly present and ``~ Beta(1.2, 5)`` where it is absent (noisy P correlated with the truth).

Speed: median wall time of 3 runs of ``cleanlab.multilabel_classification.filter.find_label_issues``
(``n_jobs=1``) against :func:`dq_pipeline.issues.cleanlab_parity.find_label_issues`, and of
``cleanlab.multilabel_classification.get_label_quality_scores`` against
:func:`~dq_pipeline.issues.cleanlab_parity.label_quality_scores`. cleanlab receives its list-of-lists
labels prepared beforehand (that conversion is not timed). The outputs are checked to be identical.

Memory: peak memory traced by ``tracemalloc`` (numpy reports its buffers to it) during one full
``detect_parity(Y, P)`` on float64 ``P`` and boolean ``Y`` already in memory, relative to ``P.nbytes``.
Results go to stdout as a markdown table and to ``bench/results/detection_speed.md``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from dq_pipeline.issues import cleanlab_parity as cp

RESULTS = Path(__file__).resolve().parent / "results"


def make_data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic (Y bool (n, k), P float64 (n, k)); generated in row blocks to bound memory."""
    rng = np.random.default_rng(seed)
    prevalence = rng.beta(0.5, 4.0, size=k)
    Y = np.empty((n, k), dtype=bool)
    P = np.empty((n, k), dtype=np.float64)
    step = max(1, (1 << 21) // k)
    for a in range(0, n, step):
        b = min(n, a + step)
        truth = rng.random((b - a, k)) < prevalence
        Y[a:b] = truth ^ (rng.random((b - a, k)) < 0.02)
        P[a:b] = np.where(truth, rng.beta(5.0, 1.2, (b - a, k)), rng.beta(1.2, 5.0, (b - a, k)))
    return Y, P


def median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_memory(Y: np.ndarray, P: np.ndarray) -> tuple[int, float]:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    result = cp.detect_parity(Y, P)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, for smoke runs)")
    parser.add_argument("--out", type=Path, default=None, help="markdown output file")
    args = parser.parse_args()
    n, k = (20_000, 20) if args.quick else (200_000, 40)
    mem_n, mem_k = (100_000, 50) if args.quick else (1_000_000, 100)
    out_path = args.out or RESULTS / ("detection_speed_quick.md" if args.quick else "detection_speed.md")

    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues

    warnings.filterwarnings("ignore")
    Y, P = make_data(n, k)
    labels = [np.flatnonzero(row).tolist() for row in Y]

    t_cl_find, cl_flags = median_time(lambda: find_label_issues(labels, P, n_jobs=1))
    t_our_find, our_flags = median_time(lambda: cp.find_label_issues(Y, P))
    t_cl_scores, cl_scores = median_time(lambda: get_label_quality_scores(labels, P))
    t_our_scores, our_scores = median_time(lambda: cp.label_quality_scores(Y, P))
    same_flags = bool(np.array_equal(cl_flags, our_flags))
    max_score_diff = float(np.max(np.abs(np.asarray(cl_scores) - np.asarray(our_scores))))
    del labels, cl_flags, cl_scores

    del Y, P
    gc.collect()
    mY, mP = make_data(mem_n, mem_k, seed=1)
    peak, mem_seconds = peak_memory(mY, mP)
    ratio = peak / mP.nbytes

    lines = [
        f"# Detection speed: cleanlab-parity vs cleanlab {_cleanlab_version()}",
        "",
        f"Machine: {platform.machine()}, {_cpu_count()} CPU(s) (shared), numpy {np.__version__}, "
        f"Python {platform.python_version()}. Generator: see `bench/bench_detection_speed.py` (seed 0).",
        "",
        f"## Speed, N={n:,} x K={k} (median of 3 runs)",
        "",
        "| function | cleanlab (s) | ours (s) | speed-up | identical |",
        "|---|---:|---:|---:|---|",
        f"| find_label_issues (cleanlab n_jobs=1) | {t_cl_find:.3f} | {t_our_find:.3f} | "
        f"{t_cl_find / t_our_find:.1f}x | {'yes' if same_flags else 'NO'} ({int(our_flags.sum()):,} flagged) |",
        f"| get_label_quality_scores | {t_cl_scores:.3f} | {t_our_scores:.3f} | "
        f"{t_cl_scores / t_our_scores:.1f}x | max abs diff {max_score_diff:.1e} |",
        "",
        f"## Memory, N={mem_n:,} x K={mem_k} (float64 P = {mP.nbytes / 2**20:,.0f} MiB, bool Y)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| peak traced memory of `detect_parity` (tracemalloc) | {peak / 2**20:,.0f} MiB |",
        f"| peak / P.nbytes | {ratio:.2f}x (target <= 3x) |",
        f"| wall time of that `detect_parity` call (tracing on) | {mem_seconds:.1f} s |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)


def _cleanlab_version() -> str:
    import cleanlab

    return cleanlab.__version__


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
