"""The ambiguous-examples detector at 100k and 1M rows x 40 tags: the shipped pair search (rows inside the band
only) vs the co-occurring pair loop as first written (every pair over all N rows; kept in
``dq_pipeline_tests/issues/test_ambiguous.py``, which checks both give the same result). Synthetic skewed
probabilities with a shared factor (many co-occurring pairs). One run per size; machine as printed.

    nice -n 10 .venv/bin/python bench/bench_ambiguous_scale.py   # -> bench/results/ambiguous_scale.md
"""

from __future__ import annotations

import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "dq_pipeline_tests" / "issues")]

from dq_pipeline.issues.ambiguous import find_ambiguous  # noqa: E402
from test_ambiguous import _pairs_over_all_rows  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    lines = ["# Ambiguous examples at scale: pair search among band rows vs over all rows", "",
             f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`  ",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; one run per size (shared machine).", "",
             "| rows x tags | shipped find_ambiguous (s) | all-rows pair loop alone (s) | ratio |", "|---|---:|---:|---:|"]
    for n in (100_000, 1_000_000):
        k = 40
        shared = rng.random((n, 1))
        P = np.clip(rng.beta(0.6, 3.0, (n, k)) + 0.2 * (shared - 0.5), 0, 1)
        Y = rng.random((n, k)) < P
        t = time.perf_counter()
        find_ambiguous(P, Y)
        new = time.perf_counter() - t
        t = time.perf_counter()
        _pairs_over_all_rows(P, Y)
        old = time.perf_counter() - t
        lines.append(f"| {n:,} x {k} | {new:.2f} | {old:.2f} | {old / new:.1f}x |")
        print(lines[-1], flush=True)
    lines += ["", "What this does not show: the whole audit (bench_scale.py); other probability shapes."]
    out = ROOT / "bench" / "results" / "ambiguous_scale.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
