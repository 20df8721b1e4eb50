"""BLAS threads in the label detector's second stage: K x 5 small logistic fits (``fit_stacked``).

Issue 11 measured the second stage collapsing under BLAS thread contention (10k rows: 2.4 s with one thread,
23-34 s with two). ``dq_pipeline.issues.label_issues.fit_stacked`` now runs its fits inside
``threadpoolctl.threadpool_limits(1)``. This script times it as shipped and with the limit lifted (the
machine's default BLAS threads), on the same synthetic data (N x K tags, P and kNN votes drawn at random,
seed 0), ``--repeats`` times each, alternating, and reports medians and their ratio. Writes
``bench/results/stacked_threads.md``.

    .venv/bin/python bench/bench_stacked_threads.py [--n 10000] [--k 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "stacked_threads.md"))
    args = parser.parse_args()
    import threadpoolctl

    from dq_pipeline.issues import label_issues as li

    rng = np.random.default_rng(0)
    Y = rng.random((args.n, args.k)) < 0.15
    P = np.clip(0.6 * Y + 0.4 * rng.random(Y.shape), 0.0, 1.0)
    votes = np.clip(0.5 * Y + 0.5 * rng.random(Y.shape), 0.0, 1.0)
    blas = threadpoolctl.threadpool_info()
    default_threads = max((p.get("num_threads", 1) for p in blas), default=1)
    limited = threadpoolctl.threadpool_limits

    def run(limit: bool) -> float:
        threadpoolctl.threadpool_limits = limited if limit else (lambda *a, **k: contextlib.nullcontext())
        try:
            t0 = time.perf_counter()
            li.fit_stacked(Y, P, extra=votes, seed=0)
            return time.perf_counter() - t0
        finally:
            threadpoolctl.threadpool_limits = limited

    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for limit in (True, False):
            times[limit].append(run(limit))
    one, many = statistics.median(times[True]), statistics.median(times[False])
    command = "python bench/bench_stacked_threads.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Second-stage fits: one BLAS thread vs the default",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {os.cpu_count()} CPU(s) (shared with other jobs); BLAS default threads: {default_threads} "
        f"({', '.join(sorted({p.get('internal_api', '?') for p in blas}))}); N = {args.n}, K = {args.k}; "
        f"{args.repeats} alternating repeats, medians.",
        "",
        "| BLAS threads | median s | all runs (s) |",
        "|---|---:|---|",
        f"| 1 (`threadpool_limits(1)`, shipped) | {one:.2f} | {', '.join(f'{t:.2f}' for t in times[True])} |",
        f"| default ({default_threads}) | {many:.2f} | {', '.join(f'{t:.2f}' for t in times[False])} |",
        "",
        f"Default ÷ one thread: **{many / one:.2f}×**. What this does not show: the contention depends on what "
        "else runs on the machine (issue 11 saw 10-14× on 2 cores); a quiet or many-core machine was not measured "
        "(each fit is small: K x 5 fits of 4N/5 rows x ~3K columns, so one thread should lose little there).",
        "",
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
