"""Is there a stronger classifier than the shipped one? Out-of-fold quality of the shipped ``fast_logreg`` (C chosen
from the audit's grid) against a one-hidden-layer MLP, per benchmark dataset.

Usage::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_classifier.py      # validation half, ~2 min

For every dataset of ``--datasets`` (default: the quality benchmark's validation half, where defaults are chosen),
the same 5-fold multilabel-stratified folds (:func:`dq_pipeline.model.multilabel_folds`, seed 0) and features as
``bench_quality.py``:

* ``prevalence``: every tag at its training-fold prevalence (model-free baseline);
* ``shipped``: :func:`dq_pipeline.model.out_of_fold_probabilities` with ``C_grid=DEFAULT_C_GRID``, as the audit;
* ``mlp(alpha)``: sklearn's ``MLPClassifier`` (standardised features, one hidden layer of 256 ReLU units, Adam,
  early stopping on 10% of the training fold, multi-label output), for each L2 ``alpha`` of ``--alphas``.

Reported: mean per-cell log-loss (lower is better) and mean per-tag AUROC (higher is better) against the given
tags, and seconds. What it does not show: label-error detection itself (``bench_quality.py``), other model
families (gradient boosting per tag would be K fits per fold), or other embeddings (the text model is the only one
shipped offline).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import datasets as bd  # noqa: E402
from bench_regularization import log_loss, oof, oof_with  # noqa: E402

from dq_pipeline.model import DEFAULT_C_GRID, multilabel_folds, out_of_fold_probabilities, per_tag_auroc  # noqa: E402

ALPHAS = (0.01, 1.0, 10.0)


def mlp_oof(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, alpha: float, seed: int = 0) -> np.ndarray:
    """(N, K) out-of-fold probabilities of a standardised one-hidden-layer MLP (``oof_with``)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return oof_with(X, Y, folds, lambda: make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(256,), alpha=alpha, early_stopping=True, max_iter=200, random_state=seed)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(bd.SPLITS["validation"]))
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "classifier.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    methods = ["prevalence", "shipped", *(f"mlp({a:g})" for a in args.alphas)]
    rows = []
    for name in args.datasets:
        d = bd.load_dataset(name)
        Y = d.Y.astype(np.uint8)
        folds = multilabel_folds(Y, 5, 0)
        cells: dict[str, tuple[float, float, float]] = {}
        for m in methods:
            t = time.perf_counter()
            if m == "prevalence":
                P = oof(d.X, Y, folds, None)
            elif m == "shipped":
                P = out_of_fold_probabilities(d.X, Y, seed=0, C_grid=DEFAULT_C_GRID).probabilities
            else:
                P = mlp_oof(d.X, Y, folds, float(m[4:-1]))
            cells[m] = (log_loss(Y, P), float(np.nanmean(per_tag_auroc(Y, P))), time.perf_counter() - t)
        split = "validation" if name in bd.SPLITS["validation"] else "test"
        rows.append((name, split, d.modality, d.X.shape, cells))
        print(f"{split:10s} {name:18s} " + "  ".join(f"{m}: {v[0]:.4f} ({v[1]:.3f}) {v[2]:.1f}s" for m, v in cells.items()),
              flush=True)

    lines = [
        "# A stronger classifier? The shipped one vs a one-hidden-layer MLP: out-of-fold log-loss (AUROC)",
        "",
        "Command: `" + " ".join(["HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_classifier.py", *sys.argv[1:]])
        + "`  ",
        f"Run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"{time.perf_counter() - t0:.0f} s wall. Definitions: the module docstring of `bench/bench_classifier.py`.",
        "",
        "Cells: mean per-cell log-loss of 5-fold out-of-fold probabilities against the given tags (lower is better), "
        "in brackets mean per-tag AUROC (higher is better); **bold** = the row's lowest log-loss.",
        "",
        "| split | dataset | modality | N x D | " + " | ".join(methods) + " |",
        "|---|---|---|---|" + "---:|" * len(methods),
    ]
    for name, split, modality, shape, cells in rows:
        best = min(methods, key=lambda m: cells[m][0])
        out = [(f"**{cells[m][0]:.4f}** ({cells[m][1]:.3f})" if m == best else f"{cells[m][0]:.4f} ({cells[m][1]:.3f})")
               for m in methods]
        lines.append(f"| {split} | {name} | {modality} | {shape[0]} x {shape[1]} | " + " | ".join(out) + " |")
    for split in ("validation", "test"):
        sub = [r for r in rows if r[1] == split]
        if sub:
            lines.append(f"| **mean {split}** | | | | " + " | ".join(
                f"{np.mean([r[4][m][0] for r in sub]):.4f} ({np.mean([r[4][m][1] for r in sub]):.3f})" for m in methods) + " |")
    val = [r for r in rows if r[1] == "validation"]
    if val:
        chosen = min(methods[1:], key=lambda m: np.mean([r[4][m][0] for r in val]))
        lines += ["", f"**Chosen on the validation half** (lowest mean log-loss over its datasets): **{chosen}**"
                  + (" — the shipped classifier stays." if chosen == "shipped" else " — not the shipped one.")
                  + " The test half, where present, is shown beside it and not used for the choice."]
    wins = {m: sum(min(methods[1:], key=lambda x: r[4][x][0]) == m for r in rows) for m in methods[1:]}
    lines += ["", "Datasets where each model has the lowest log-loss (prevalence excluded): "
              + ", ".join(f"{m} {n}" for m, n in wins.items()) + ".",
              "", "Seconds per dataset (all 5 folds): " + "; ".join(
                  f"{r[0]} " + ", ".join(f"{m} {r[4][m][2]:.1f}" for m in methods[1:]) for r in rows) + "."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
