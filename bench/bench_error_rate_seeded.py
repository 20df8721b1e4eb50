"""Expected error rate under heavy, simple noise: the shipped estimate against the dropped mixture fit.

Outside the honest benchmark's noise models on purpose: one random tag flipped (or one of several tags dropped)
on 10%, 20% and 31% of the rows of small real MULAN datasets — what a user's badly labelled batch looks like and
what ``dq_pipeline_tests/test_history.py`` seeds. Per run: the true share of wrong rows, each estimator's
``expected_error_rate``, how many rows it flags and how many of those were corrupted. P = the shipped 5-fold
out-of-fold probabilities, features as in ``bench/datasets.py``. Reads ``../shared/data``.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_error_rate_seeded.py

The reference is ``true_rate`` (what a perfect estimator reads; flagged/true = 1). Not shown: the honest
benchmark's plausible noise (``bench_quality.py``), larger datasets. Writes ``bench/results/error_rate_seeded.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import load_dataset  # noqa: E402
from bench.label_variants import mixture_rate_candidate  # noqa: E402


def corrupt(Y: np.ndarray, rate: float, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy Y, (N,) bool corrupted): one random tag flipped ('flip') or one of >= 2 tags dropped ('drop')."""
    rng = np.random.default_rng(seed)
    Y = np.asarray(Y, dtype=np.uint8).copy()
    rows = rng.choice(len(Y), size=int(round(rate * len(Y))), replace=False)
    hit = np.zeros(len(Y), dtype=bool)
    for i in rows:
        on = np.flatnonzero(Y[i])
        if kind == "flip":
            Y[i, rng.integers(Y.shape[1])] ^= 1
        elif len(on) > 1:
            Y[i, rng.choice(on)] = 0
        else:
            continue
        hit[i] = True
    return Y, hit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["flags", "emotions"])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.2, 0.31])
    parser.add_argument("--kinds", nargs="+", default=["flip", "drop"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "error_rate_seeded.md"))
    args = parser.parse_args(argv)
    from dq_pipeline.issues.label_issues import find_label_issues
    from dq_pipeline.model import out_of_fold_probabilities

    start, rows = time.perf_counter(), []
    for name in args.datasets:
        data = load_dataset(name)
        for kind in args.kinds:
            for rate in args.rates:
                for seed in args.seeds:
                    Y, hit = corrupt(data.Y, rate, kind, seed)
                    P = out_of_fold_probabilities(data.X, Y, seed=seed).probabilities
                    for method, run in (("shipped", find_label_issues), ("mixture (dropped)", mixture_rate_candidate)):
                        res = run(Y, P, features=data.X, seed=seed)
                        flagged = np.asarray(res.flags, dtype=bool)
                        rows.append({"dataset": name, "noise": kind, "rate": rate, "seed": seed, "method": method,
                                     "true_rate": hit.mean(), "estimate": res.summary["expected_error_rate"],
                                     "flagged": int(flagged.sum()), "corrupted": int(hit.sum()),
                                     "hits": int((flagged & hit).sum())})
                    r = rows[-2:]
                    print(f"{name} {kind} {rate:.2f} seed {seed}: true {hit.mean():.3f}; "
                          + "; ".join(f"{x['method']} {x['estimate']:.3f} ({x['flagged']} flagged, {x['hits']} hits)"
                                      for x in r), flush=True)
    df = pd.DataFrame(rows)
    df["flagged/true"] = df["flagged"] / df["corrupted"].clip(lower=1)
    df["precision"] = df["hits"] / df["flagged"].clip(lower=1)
    df["recall"] = df["hits"] / df["corrupted"].clip(lower=1)
    table = (df.groupby(["dataset", "noise", "rate", "method"])[["true_rate", "estimate", "flagged/true", "precision",
                                                                    "recall"]].median().round(3).reset_index())
    command = "HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_error_rate_seeded.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = (f"# Expected error rate under heavy simple noise\n\nCommand: `{command.strip()}`  \n"
            f"Wall time {time.perf_counter() - start:.0f} s; medians over seeds {args.seeds}.\n\n"
            + table.to_markdown(index=False) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
